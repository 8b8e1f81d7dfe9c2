package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/queue"
	"github.com/smtpgw/smtpgw/internal/safetext"
)

const queueUsage = `usage: smtpgw queue <command> [-config FILE] [ID]

smtpgw queue inspects and changes the spool named by [queue] dir. It reads
only the [queue] section, works on the files directly and is safe while the
gateway runs (which notices changes within a second). Run it as the service
user.

commands:
  list [-state S] [-json]    one line per message: ID, state, mailbox, sender,
                             recipient count, attempts, age, last error
                             (for a held message, why it is held);
                             S is queued, deferred, held or failed
  show ID                    envelope, state and headers of one message
  retry ID|all               try now (a dead letter goes back to the queue)
  delete ID                  remove a message for good
  retry-failed               move every dead letter back to the queue
  purge-failed -older-than D delete dead letters older than D (e.g. 7d)

example: smtpgw queue list -config /etc/smtpgw/smtpgw.toml -state failed
`

// queueStates are the values of queue list -state.
var queueStates = []string{queue.StateQueued, queue.StateDeferred, queue.StateHeld, queue.StateFailed}

// queueCommand inspects and changes the spool of the configuration.
func queueCommand(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stdout, queueUsage)
		return nil
	}
	sub := args[0]
	fs := flag.NewFlagSet("queue "+sub, flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: $"+configEnv+", else the built-in example)")
	var state, olderThan string
	var asJSON bool
	switch sub {
	case "list":
		fs.StringVar(&state, "state", "", "only messages in this state: "+strings.Join(queueStates, ", "))
		fs.BoolVar(&asJSON, "json", false, "one JSON array, for scripts")
	case "purge-failed":
		fs.StringVar(&olderThan, "older-than", "", `age of the dead letters to delete, e.g. "7d" or "36h"`)
	}
	operands, err := parseInterspersed(fs, args[1:], stdout)
	if err != nil {
		return err
	}
	want := map[string]int{"list": 0, "retry-failed": 0, "purge-failed": 0, "show": 1, "retry": 1, "delete": 1}
	n, known := want[sub]
	if !known {
		return fmt.Errorf("%w: unknown queue command %q\n\n%s", errUsage, sub, queueUsage)
	}
	if len(operands) != n {
		return fmt.Errorf("%w: queue %s takes %d argument(s)\n\n%s", errUsage, sub, n, queueUsage)
	}
	if state != "" && !slices.Contains(queueStates, state) {
		return fmt.Errorf("%w: -state must be one of %s", errUsage, strings.Join(queueStates, ", "))
	}
	var age config.Duration
	if sub == "purge-failed" {
		if err := age.UnmarshalText([]byte(olderThan)); err != nil || olderThan == "" {
			return fmt.Errorf("%w: purge-failed needs -older-than, e.g. -older-than 7d", errUsage)
		}
	}
	q, err := loadQueueConfig(*path)
	if err != nil {
		return err
	}
	spool, err := queue.OpenExisting(q.Dir)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return listQueue(spool, state, asJSON, stdout)
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
	case "purge-failed":
		count, err := spool.PurgeFailed(age.D())
		fmt.Fprintf(stdout, "%d dead letter(s) older than %s deleted\n", count, olderThan)
		return err
	}
	return nil
}

// parseInterspersed parses flags given before or after the operands, so
// that both `queue show -config F ID` and `queue show ID -config F` work.
func parseInterspersed(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var operands []string
	for {
		if err := parseFlags(fs, args, stdout); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return operands, nil
		}
		operands = append(operands, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func listQueue(spool *queue.Spool, state string, asJSON bool, stdout io.Writer) error {
	list, err := spool.List()
	if err != nil {
		return err
	}
	if state != "" {
		list = slices.DeleteFunc(list, func(m queue.Info) bool { return m.State != state })
	}
	if asJSON {
		if list == nil {
			list = []queue.Info{}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tMAILBOX\tFROM\tRCPTS\tATTEMPTS\tAGE\tLAST ERROR")
	now := time.Now()
	for _, m := range list {
		from := "<" + safetext.Escape(m.MailFrom) + ">"
		why := m.LastError
		if m.State == queue.StateHeld {
			why = m.Held
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", m.ID, m.State, safetext.Escape(m.Mailbox), from, len(m.Recipients), m.Attempts,
			now.Sub(m.Received).Round(time.Second), safetext.Escape(oneLine(why)))
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
	var next string
	switch {
	case d.State == queue.StateFailed:
		next = "none: a dead letter (smtpgw queue retry " + d.ID + " tries it again)"
	case d.NextAttempt.IsZero():
		next = "now"
	default:
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
	if d.Held != "" {
		fmt.Fprintf(stdout, "Held:         %s\n", safetext.Escape(d.Held))
	}
	fmt.Fprintf(stdout, "Last error:   %s\n", safetext.Escape(d.LastError))
	if d.LastErrorCode+d.RequestID+d.ClientRequestID != "" {
		fmt.Fprintf(stdout, "Graph IDs:    code %s, request-id %s, client-request-id %s\n",
			safetext.Escape(d.LastErrorCode), safetext.Escape(d.RequestID), safetext.Escape(d.ClientRequestID))
	}
	fmt.Fprintln(stdout)
	_, err = io.WriteString(stdout, safetext.EscapeLines(string(d.Header)))
	return err
}

// oneLine keeps a table row on one line whatever an error message holds.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
