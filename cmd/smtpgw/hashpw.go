package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/term"
)

// hashCost is the bcrypt cost of new hashes: about 50–100 ms per check on a
// small server, slow for a password guesser, quick for a printer's login.
const hashCost = 12

// minRecommendedCost is the lowest cost that still slows a guesser down
// enough to be worth having.
const minRecommendedCost = 10

// hashPassword prints the bcrypt hash of a password for a [[user]]
// password_hash: asked for without echo on a terminal, else read as one
// line from stdin.
func hashPassword(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hash-password", flag.ContinueOnError)
	cost := fs.Int("cost", hashCost, fmt.Sprintf("bcrypt cost (%d-%d)", bcrypt.MinCost, bcrypt.MaxCost))
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: hash-password asks for the password (or reads it on stdin), never as an argument, which other users could see", errUsage)
	}
	if *cost < bcrypt.MinCost || *cost > bcrypt.MaxCost {
		return fmt.Errorf("%w: -cost must be %d to %d", errUsage, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if *cost < minRecommendedCost {
		fmt.Fprintf(stderr, "warning: cost %d is fast to guess; use at least %d\n", *cost, minRecommendedCost)
	}
	password, err := readPassword(stdin, stderr)
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), *cost)
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	fmt.Fprintln(stdout, string(hash))
	return nil
}

// readPassword asks twice without echo when stdin is a terminal, and
// otherwise reads one line.
func readPassword(stdin io.Reader, stderr io.Writer) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, "Password: ")
		first, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		fmt.Fprint(stderr, "Again: ")
		second, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if string(first) != string(second) {
			return "", errors.New("the two passwords differ")
		}
		if len(first) == 0 {
			return "", errors.New("empty password")
		}
		return string(first), nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	if password == "" {
		return "", errors.New("empty password on stdin")
	}
	return password, nil
}
