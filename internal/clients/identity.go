package clients

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/config"
)

// Identity is who a client is: a [[user]] that logged in, or (for SMTP
// only) a [[network]] its address belongs to. What it may send is SMTP's
// business; the fields are carried here so that one lookup finds them.
type Identity struct {
	Name           string   // "user:NAME" or "network:CIDR"
	Mailbox        string   // empty: the envelope sender's own mailbox
	AllowedSenders []string // patterns for envelope.SenderAllowed
	Policy         config.Policy
	ReadMailbox    string // the mailbox it reads over IMAP or POP3; empty: it cannot read
}

type account struct {
	id   Identity
	hash []byte
}

type network struct {
	prefix netip.Prefix
	id     Identity
	// The network's own connection limits; 0: its clients are exempt.
	connectionsPerAddress, connectionsPerMinute int
}

// directory knows every [[user]] and [[network]] of one configuration.
type directory struct {
	accounts map[string]*account
	networks []network // most specific prefix first
	// dummyHash is checked for unknown usernames so that a failed login
	// costs the same time whether or not the user exists.
	dummyHash []byte
}

func newDirectory(cfg *config.Config) (*directory, error) {
	d := &directory{accounts: make(map[string]*account, len(cfg.Users))}
	maxCost := 0
	for _, u := range cfg.Users {
		cost, err := bcrypt.Cost([]byte(u.PasswordHash))
		if err != nil {
			return nil, fmt.Errorf("user %q: password_hash: %w", u.Username, err)
		}
		maxCost = max(maxCost, cost)
		d.accounts[u.Username] = &account{
			id:   Identity{Name: "user:" + u.Username, Mailbox: u.Mailbox, AllowedSenders: u.AllowedSenders, Policy: u.Policy, ReadMailbox: u.ReadMailbox},
			hash: []byte(u.PasswordHash),
		}
	}
	if len(cfg.Users) > 0 {
		hash, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), maxCost)
		if err != nil {
			return nil, fmt.Errorf("dummy password hash: %w", err)
		}
		d.dummyHash = hash
	}
	for _, n := range cfg.Networks {
		for _, p := range n.Prefixes {
			d.networks = append(d.networks, network{
				prefix:                p.Masked(),
				id:                    Identity{Name: "network:" + p.Masked().String(), Mailbox: n.Mailbox, AllowedSenders: n.AllowedSenders, Policy: n.Policy},
				connectionsPerAddress: n.ConnectionsPerAddress,
				connectionsPerMinute:  n.ConnectionsPerMinute,
			})
		}
	}
	slices.SortStableFunc(d.networks, func(a, b network) int { return b.prefix.Bits() - a.prefix.Bits() })
	return d, nil
}

// check compares a username and password; it returns ErrBadCredentials
// for an unknown user or a wrong password alike, after the same work.
func (d *directory) check(username, password string) (*Identity, error) {
	acct, known := d.accounts[username]
	hash := d.dummyHash
	if known {
		hash = acct.hash
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !known {
		return nil, ErrBadCredentials
	}
	return &acct.id, nil
}

// verified returns the identity of username when v holds password as
// accepted for the account's current password_hash.
func (d *directory) verified(v *verifiedCache, username, password string, now time.Time) (*Identity, bool) {
	acct, known := d.accounts[username]
	if !known || !v.matches(username, string(acct.hash), password, now) {
		return nil, false
	}
	return &acct.id, true
}

// networkOf returns the most specific [[network]] holding addr, or nil.
func (d *directory) networkOf(addr netip.Addr) *network {
	addr = addr.Unmap()
	for i := range d.networks {
		if d.networks[i].prefix.Contains(addr) {
			return &d.networks[i]
		}
	}
	return nil
}
