package config

import (
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// RecommendedBcryptCost is the lowest bcrypt cost that holds up against
// guessing from a stolen configuration; cheaper hashes get a warning.
const RecommendedBcryptCost = 10

// WeakHashWarning describes why a bcrypt hash is too cheap, or returns ""
// when it is fine (or not a bcrypt hash at all, which validation reports).
// `hash-password` and `check` print it; Load adds it to Warnings.
func WeakHashWarning(hash string) string {
	cost, err := bcrypt.Cost([]byte(hash))
	if err != nil || cost >= RecommendedBcryptCost {
		return ""
	}
	return fmt.Sprintf("password_hash has bcrypt cost %d, below %d: a stolen configuration would be cheap to crack (make a new one with `smtpgw hash-password`)", cost, RecommendedBcryptCost)
}
