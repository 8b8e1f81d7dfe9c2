package clients

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// verifiedLifetime is how long a password checked with bcrypt is taken
// again without bcrypt. Applications that poll a mailbox log in every few
// minutes with the same password: each would otherwise pay the full cost
// of the hash, and queue behind the others in the bcrypt pool.
const verifiedLifetime = time.Hour

// verifiedCache remembers the passwords bcrypt accepted lately, as
// Dovecot's auth cache does, so that a repeated login skips bcrypt. It
// keeps, per username, an HMAC-SHA256 of the password under a key made
// at random for this process, never the password: a memory dump gives
// no password and no offline guess (the key would have to be found too,
// and then each guess costs as little as an HMAC, which is why the
// entries are few and expire). An entry is bound to the password_hash it
// was checked against, so a changed hash or a removed user makes it
// worthless at once; Reload also drops it. Only usernames of [[user]]
// entries get an entry, one each, which bounds the size.
type verifiedCache struct {
	key []byte

	mu      sync.Mutex
	entries map[string]verifiedPassword
}

type verifiedPassword struct {
	mac     []byte
	hash    string // the password_hash that accepted the password
	expires time.Time
}

func newVerifiedCache() *verifiedCache {
	key := make([]byte, sha256.Size)
	rand.Read(key) // never returns an error: the program stops if the system cannot give randomness
	return &verifiedCache{key: key, entries: map[string]verifiedPassword{}}
}

func (v *verifiedCache) mac(username, password string) []byte {
	m := hmac.New(sha256.New, v.key)
	m.Write([]byte(username))
	m.Write([]byte{0})
	m.Write([]byte(password))
	return m.Sum(nil)
}

// matches reports whether password is the one bcrypt accepted for
// username against hash, less than verifiedLifetime ago. A mismatch says
// nothing: the password may have changed, and bcrypt decides.
func (v *verifiedCache) matches(username, hash, password string, now time.Time) bool {
	v.mu.Lock()
	e, ok := v.entries[username]
	v.mu.Unlock()
	if !ok || e.hash != hash || !now.Before(e.expires) {
		return false
	}
	return hmac.Equal(e.mac, v.mac(username, password))
}

// remember notes that bcrypt accepted password for username against hash.
func (v *verifiedCache) remember(username, hash, password string, now time.Time) {
	mac := v.mac(username, password)
	v.mu.Lock()
	v.entries[username] = verifiedPassword{mac: mac, hash: hash, expires: now.Add(verifiedLifetime)}
	v.mu.Unlock()
}

// keep drops the entries of users d no longer has, or whose password_hash
// changed, and those expired.
func (v *verifiedCache) keep(d *directory, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for username, e := range v.entries {
		if acct, ok := d.accounts[username]; !ok || string(acct.hash) != e.hash || !now.Before(e.expires) {
			delete(v.entries, username)
		}
	}
}
