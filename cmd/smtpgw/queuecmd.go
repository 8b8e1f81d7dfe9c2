package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/safetext"
)

const queueUsage = `usage: smtpgw queue <command> [-config FILE] [ID]

commands:
  list           one line per message: ID, state, mailbox, attempts, age, last error
  show ID        envelope, state and headers of one message
  retry ID|all   try now (a dead letter goes back to the queue)
  delete ID      remove a message for good
  retry-failed   move every dead letter back to the queue
`

// queueCommand inspects and changes the spool of the configuration. It works
// on the files directly, so it is safe while the server runs: the server is
// poked to rescan.
func queueCommand(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" {
		fmt.Fprint(stdout, queueUsage)
		return nil
	}
	sub := args[0]
	fs := flag.NewFlagSet("queue "+sub, flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: the built-in example)")
	operands, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	want := map[string]int{"list": 0, "retry-failed": 0, "show": 1, "retry": 1, "delete": 1}
	n, known := want[sub]
	if !known {
		return fmt.Errorf("%w: unknown queue command %q\n\n%s", errUsage, sub, queueUsage)
	}
	if len(operands) != n {
		return fmt.Errorf("%w: queue %s takes %d argument(s)\n\n%s", errUsage, sub, n, queueUsage)
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	spool, err := queue.OpenExisting(cfg.Queue.Dir)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return listQueue(spool, stdout)
	case "show":
		return showMessage(spool, operands[0], stdout)
	case "retry":
		if operands[0] == "all" {
			count, err := spool.RetryAll()
			fmt.Fprintf(stdout, "%d message(s) will be tried now\n", count)
			return err
		}
		if err := spool.Retry(operands[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s will be tried now\n", operands[0])
	case "delete":
		if err := spool.Delete(operands[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s deleted\n", operands[0])
	case "retry-failed":
		count, err := spool.RetryFailed()
		fmt.Fprintf(stdout, "%d dead letter(s) moved back to the queue\n", count)
		return err
	}
	return nil
}

// parseInterspersed parses flags given before or after the operands, so
// that both `queue show -config F ID` and `queue show ID -config F` work.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var operands []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return operands, nil
		}
		operands = append(operands, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func listQueue(spool *queue.Spool, stdout io.Writer) error {
	list, err := spool.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tMAILBOX\tATTEMPTS\tAGE\tLAST ERROR")
	now := time.Now()
	for _, m := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", m.ID, m.State, safetext.Escape(m.Mailbox), m.Attempts,
			now.Sub(m.Received).Round(time.Second), safetext.Escape(oneLine(m.LastError)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d message(s)\n", len(list))
	return nil
}

func showMessage(spool *queue.Spool, id string, stdout io.Writer) error {
	d, err := spool.Show(id)
	if err != nil {
		return err
	}
	next := "now"
	if !d.NextAttempt.IsZero() {
		next = d.NextAttempt.Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "ID:           %s\n", d.ID)
	fmt.Fprintf(stdout, "State:        %s\n", d.State)
	// Client data is escaped: a recipient of "\x1b]0;…" must not drive
	// the admin's terminal.
	fmt.Fprintf(stdout, "Identity:     %s\n", safetext.Escape(d.Envelope.Identity))
	fmt.Fprintf(stdout, "Client:       %s\n", safetext.Escape(d.Envelope.ClientAddr))
	fmt.Fprintf(stdout, "Mailbox:      %s\n", safetext.Escape(d.Mailbox))
	fmt.Fprintf(stdout, "Mail from:    <%s>\n", safetext.Escape(d.MailFrom))
	fmt.Fprintf(stdout, "Recipients:   %s\n", safetext.Escape(strings.Join(d.Recipients, ", ")))
	fmt.Fprintf(stdout, "Received:     %s\n", d.Received.Format(time.RFC3339))
	fmt.Fprintf(stdout, "Size:         %d bytes\n", d.Size)
	fmt.Fprintf(stdout, "Attempts:     %d\n", d.Attempts)
	fmt.Fprintf(stdout, "Next attempt: %s\n", next)
	fmt.Fprintf(stdout, "Last error:   %s\n\n", safetext.Escape(d.LastError))
	_, err = io.WriteString(stdout, safetext.EscapeLines(string(d.Header)))
	return err
}

// oneLine keeps a table row on one line whatever an error message holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
