package clients

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestLoginFloorOnFailuresOnly: auth_min_duration delays the failures,
// which must look alike, and never a success.
func TestLoginFloorOnFailuresOnly(t *testing.T) {
	g := testGate(t, "[limits]\nauth_min_duration = \"10s\"\n")
	c := admit(t, g, "192.0.2.7")
	start := time.Now()
	if _, err := g.Login(c, printerUser, printerPassword); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d >= 5*time.Second {
		t.Errorf("a success waited %v: the floor is for failures", d)
	}
}

// TestVerifiedPasswords: a password bcrypt accepted is taken again from
// the cache, kept as an HMAC only; a wrong one still goes to bcrypt; a
// changed password_hash or a removed user drops the entry; the guessing
// throttle still applies.
func TestVerifiedPasswords(t *testing.T) {
	g := testGate(t, "[limits]\nauth_min_duration = \"1ms\"\nauth_failures = 2\n")
	login := func(addr, password string) error {
		c := admit(t, g, addr)
		defer c.Close()
		_, err := g.Login(c, printerUser, password)
		return err
	}
	cached := func(password string) bool {
		_, ok := g.dir.Load().verified(g.verified, printerUser, password, time.Now())
		return ok
	}
	if cached(printerPassword) {
		t.Fatal("cached before any login")
	}
	if err := login("192.0.2.7", printerPassword); err != nil {
		t.Fatal(err)
	}
	if !cached(printerPassword) || cached("wrong") || cached("") {
		t.Error("the cache does not hold exactly the password that logged in")
	}
	e := g.verified.entries[printerUser]
	if bytes.Contains(e.mac, []byte(printerPassword)) || len(e.mac) != 32 {
		t.Errorf("entry %x is not an HMAC-SHA256", e.mac)
	}
	if _, ok := g.dir.Load().verified(g.verified, printerUser, printerPassword, time.Now().Add(verifiedLifetime)); ok {
		t.Error("an entry outlives verifiedLifetime")
	}
	if err := login("192.0.2.7", printerPassword); err != nil {
		t.Errorf("second login: %v", err)
	}
	if err := login("192.0.2.7", "wrong"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("wrong password after a cached one: %v", err)
	}

	// A guessing address is throttled whatever the cache holds.
	for i := range 2 {
		if err := login("198.51.100.9", fmt.Sprint("guess ", i)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	if err := login("198.51.100.9", printerPassword); !errors.Is(err, ErrThrottled) {
		t.Errorf("throttled address with the cached password: %v", err)
	}

	// A reload that keeps the hash keeps the entry; a new hash drops it,
	// and the old password no longer logs in.
	same := testConfig(t, bcrypt.MinCost, "[limits]\nauth_min_duration = \"1ms\"\n")
	same.Users[0].PasswordHash = string(g.dir.Load().accounts[printerUser].hash)
	if err := g.Reload(same); err != nil {
		t.Fatal(err)
	}
	if !cached(printerPassword) {
		t.Error("a reload without a change dropped the entry")
	}
	changed := testConfig(t, bcrypt.MinCost, "[limits]\nauth_min_duration = \"1ms\"\n")
	hash, _ := bcrypt.GenerateFromPassword([]byte("new password"), bcrypt.MinCost)
	changed.Users[0].PasswordHash = string(hash)
	if err := g.Reload(changed); err != nil {
		t.Fatal(err)
	}
	if len(g.verified.entries) != 0 || cached(printerPassword) {
		t.Error("a changed password_hash kept the entry")
	}
	if err := login("192.0.2.8", printerPassword); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("old password after the change: %v", err)
	}
	if err := login("192.0.2.8", "new password"); err != nil || !cached("new password") {
		t.Errorf("new password: %v", err)
	}
	removed := testConfig(t, bcrypt.MinCost, "")
	removed.Users = nil
	if err := g.Reload(removed); err != nil {
		t.Fatal(err)
	}
	if len(g.verified.entries) != 0 {
		t.Error("a removed user kept the entry")
	}
}
