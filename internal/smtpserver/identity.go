package smtpserver

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/crypto/bcrypt"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/envelope"
)

// identity is who submits a message and what it may do.
type identity struct {
	name           string   // "user:NAME" or "network:CIDR"
	mailbox        string   // empty: the MAIL FROM address itself
	allowedSenders []string // patterns for envelope.SenderAllowed
	policy         config.Policy
}

// recipientAllowed applies allowed_recipients (any recipient when empty),
// with the same patterns as allowed_senders.
func (id *identity) recipientAllowed(addr string) bool {
	return len(id.policy.AllowedRecipients) == 0 || envelope.SenderAllowed(id.policy.AllowedRecipients, addr)
}

// mailboxFor is the Graph mailbox a message from this identity is sent as.
func (id *identity) mailboxFor(mailFrom string) string {
	if id.mailbox != "" {
		return id.mailbox
	}
	return mailFrom
}

type account struct {
	id   identity
	hash []byte
}

type allowedNetwork struct {
	prefix netip.Prefix
	id     identity
	// A network's own connection limits; 0: [limits] applies.
	connectionsPerAddress, connectionsPerMinute int
}

// identities knows every [[user]] and [[network]] of the configuration.
type identities struct {
	accounts map[string]*account
	networks []allowedNetwork // most specific prefix first
	// dummyHash is checked for unknown usernames so that a failed login
	// costs the same time whether or not the user exists.
	dummyHash []byte
}

func newIdentities(cfg *config.Config) (*identities, error) {
	ids := &identities{accounts: make(map[string]*account, len(cfg.Users))}
	maxCost := 0
	for _, u := range cfg.Users {
		cost, err := bcrypt.Cost([]byte(u.PasswordHash))
		if err != nil {
			return nil, fmt.Errorf("user %q: password_hash: %w", u.Username, err)
		}
		maxCost = max(maxCost, cost)
		ids.accounts[u.Username] = &account{
			id:   identity{name: "user:" + u.Username, mailbox: u.Mailbox, allowedSenders: allowedSenders(u.AllowedSenders, u.Mailbox), policy: u.Policy},
			hash: []byte(u.PasswordHash),
		}
	}
	if len(cfg.Users) > 0 {
		hash, err := bcrypt.GenerateFromPassword([]byte(rand.Text()), maxCost)
		if err != nil {
			return nil, fmt.Errorf("dummy password hash: %w", err)
		}
		ids.dummyHash = hash
	}
	for _, n := range cfg.Networks {
		for _, p := range n.Prefixes {
			ids.networks = append(ids.networks, allowedNetwork{
				prefix:                p.Masked(),
				id:                    identity{name: "network:" + p.Masked().String(), mailbox: n.Mailbox, allowedSenders: allowedSenders(n.AllowedSenders, n.Mailbox), policy: n.Policy},
				connectionsPerAddress: n.ConnectionsPerAddress,
				connectionsPerMinute:  n.ConnectionsPerMinute,
			})
		}
	}
	slices.SortStableFunc(ids.networks, func(a, b allowedNetwork) int { return b.prefix.Bits() - a.prefix.Bits() })
	return ids, nil
}

// allowedSenders applies the documented default: the mailbox alone.
func allowedSenders(patterns []string, mailbox string) []string {
	if len(patterns) == 0 && mailbox != "" {
		return []string{mailbox}
	}
	return patterns
}

// known reports whether username is an account. Logs name a username only
// when it is one: a client that mixes up its fields may have sent the
// password in its place.
func (ids *identities) known(username string) bool {
	_, ok := ids.accounts[username]
	return ok
}

// hasAccounts reports whether AUTH can succeed at all.
func (ids *identities) hasAccounts() bool { return len(ids.accounts) > 0 }

// authenticate checks a username and password; it returns errAuthFailed
// for an unknown user or a wrong password alike.
func (ids *identities) authenticate(username, password string) (*identity, error) {
	acct, known := ids.accounts[username]
	hash := ids.dummyHash
	if known {
		hash = acct.hash
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !known {
		return nil, errAuthFailed
	}
	return &acct.id, nil
}

// network returns the identity of the most specific [[network]] holding
// addr, or nil.
func (ids *identities) network(addr netip.Addr) *identity {
	if n := ids.networkOf(addr); n != nil {
		return &n.id
	}
	return nil
}

func (ids *identities) networkOf(addr netip.Addr) *allowedNetwork {
	addr = addr.Unmap()
	for i := range ids.networks {
		if ids.networks[i].prefix.Contains(addr) {
			return &ids.networks[i]
		}
	}
	return nil
}

// connectionLimits are the connections addr may hold open and open per
// minute: its [[network]]'s own limits where set, else [limits].
func (ids *identities) connectionLimits(addr netip.Addr, l config.Limits) (perAddress, perMinute int) {
	perAddress, perMinute = l.ConnectionsPerAddress, l.ConnectionsPerMinute
	if n := ids.networkOf(addr); n != nil {
		if n.connectionsPerAddress > 0 {
			perAddress = n.connectionsPerAddress
		}
		if n.connectionsPerMinute > 0 {
			perMinute = n.connectionsPerMinute
		}
	}
	return perAddress, perMinute
}
