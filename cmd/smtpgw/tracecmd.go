package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/smtpgw/smtpgw/internal/config"
	"github.com/smtpgw/smtpgw/internal/safetext"
	"github.com/smtpgw/smtpgw/internal/trace"
)

const traceHelp = `smtpgw trace searches the message trace: every message accepted in the last
[log] trace_days days, with its client, identity, sender, recipients,
Message-ID, each attempt's outcome and the upstream's reference (Graph's
request-id). It prints one line per message; with -id, every event of that
message. It reads only the trace files in the spool ([queue] dir), so it
works while the gateway runs and after it stopped. Run it as the service
user.

-from and -to take an address or *@domain, as allowed_senders; -since and
-until a duration back from now (2h, 7d) or a time (2026-03-02,
"2026-03-02 10:00", RFC 3339); -client an address or CIDR.

example: smtpgw trace -config /etc/smtpgw/smtpgw.toml -to bob@contoso.com -since 1d
`

// traceDefaultLimit bounds what a broad search holds and prints.
const traceDefaultLimit = 1000

// traceCommand searches the message trace of the configuration's spool.
func traceCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	path := fs.String("config", "", "configuration file (default: $"+configEnv+", else the built-in example)")
	var q trace.Query
	var client, since, until string
	var asJSON bool
	fs.StringVar(&q.From, "from", "", "envelope sender: address or *@domain")
	fs.StringVar(&q.To, "to", "", "a recipient: address or *@domain")
	fs.StringVar(&client, "client", "", "client address or CIDR")
	fs.StringVar(&q.ID, "id", "", "queue ID: show every event of this message")
	fs.StringVar(&q.MessageID, "message-id", "", "Message-ID header, with or without <>")
	fs.StringVar(&since, "since", "", "accepted at or after: a duration back from now (2h, 7d) or a time")
	fs.StringVar(&until, "until", "", "accepted before: a duration back from now or a time")
	fs.StringVar(&q.State, "state", "", "only messages now in this state: "+strings.Join(trace.States, ", "))
	fs.IntVar(&q.Limit, "limit", traceDefaultLimit, "show at most this many messages, the latest")
	fs.BoolVar(&asJSON, "json", false, "one JSON array, for scripts")
	if err := noArguments(fs, args, stdout); err != nil {
		return err
	}
	var err error
	if q.Client, err = parseClient(client); err != nil {
		return err
	}
	now := time.Now()
	if q.Since, err = parseWhen("since", since, now); err != nil {
		return err
	}
	if q.Until, err = parseWhen("until", until, now); err != nil {
		return err
	}
	if q.State != "" && !slices.Contains(trace.States, q.State) {
		return fmt.Errorf("%w: -state must be one of %s", errUsage, strings.Join(trace.States, ", "))
	}
	data, name, err := readConfig(*path)
	if err != nil {
		return err
	}
	qc, traceOn, err := config.ParseTrace(data, name)
	if err != nil {
		return err
	}
	if !traceOn {
		return fmt.Errorf("the message trace is off ([log] trace = false in %s): the gateway writes none; files it wrote before stay in %s", name, trace.Dir(qc.Dir))
	}
	res, err := trace.Search(trace.Dir(qc.Dir), q)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("no message trace in %s: has a gateway run with this spool?", trace.Dir(qc.Dir))
	}
	if err != nil {
		return err
	}
	switch {
	case asJSON:
		return printTraceJSON(res, stdout)
	case q.ID != "":
		return printTraceEvents(res, q.ID, stdout)
	}
	return printTraceList(res, stdout)
}

// parseClient reads -client: an address or a CIDR.
func parseClient(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := config.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%w: -client %q is not an address or CIDR", errUsage, s)
	}
	return p, nil
}

// parseWhen reads -since or -until: a duration back from now, or a time
// in the local zone unless it names one.
func parseWhen(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	var d config.Duration
	if d.UnmarshalText([]byte(s)) == nil {
		return now.Add(-d.D()), nil
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf(`%w: -%s %q is neither a duration (2h, 7d) nor a time (2026-03-02, "2026-03-02 10:00")`, errUsage, name, s)
}

const traceTimeLayout = "2006-01-02 15:04:05"

func printTraceList(res *trace.Result, stdout io.Writer) error {
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ACCEPTED\tID\tSTATE\tFINISHED\tCLIENT\tIDENTITY\tFROM\tTO\tATTEMPTS\tREFERENCE")
	for _, m := range res.Messages {
		a := m.Accepted
		finished := "-"
		if m.State == trace.Delivered || m.State == trace.Failed {
			finished = m.Updated.Time.Local().Format(traceTimeLayout)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t<%s>\t%s\t%d\t%s\n", a.Time.Local().Format(traceTimeLayout), safetext.Escape(a.ID), m.State,
			finished, safetext.Escape(a.Client), safetext.Escape(a.Identity), safetext.Escape(a.From), recipientsCell(a.To),
			m.Attempts, cmpOrDash(safetext.Escape(m.Reference)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d message(s)", len(res.Messages))
	if res.Older {
		fmt.Fprint(stdout, "; older ones matched too (raise -limit or narrow the search)")
	}
	fmt.Fprintln(stdout)
	return nil
}

// recipientsCell is the first recipient and how many more there are.
func recipientsCell(to []string) string {
	switch len(to) {
	case 0:
		return "-"
	case 1:
		return safetext.Escape(to[0])
	}
	return fmt.Sprintf("%s (+%d)", safetext.Escape(to[0]), len(to)-1)
}

func cmpOrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printTraceEvents(res *trace.Result, id string, stdout io.Writer) error {
	if len(res.Messages) == 0 {
		return fmt.Errorf("no message %s in the trace", safetext.Escape(id))
	}
	m := res.Messages[0]
	a := m.Accepted
	fmt.Fprintf(stdout, "ID:          %s\n", safetext.Escape(a.ID))
	fmt.Fprintf(stdout, "State:       %s\n", m.State)
	fmt.Fprintf(stdout, "Client:      %s\n", safetext.Escape(a.Client))
	fmt.Fprintf(stdout, "Identity:    %s\n", safetext.Escape(a.Identity))
	fmt.Fprintf(stdout, "Mailbox:     %s\n", safetext.Escape(a.Mailbox))
	fmt.Fprintf(stdout, "Mail from:   <%s>\n", safetext.Escape(a.From))
	fmt.Fprintf(stdout, "Recipients:  %s\n", safetext.Escape(strings.Join(a.To, ", ")))
	fmt.Fprintf(stdout, "Message-ID:  %s\n", safetext.Escape(a.MessageID))
	if a.Subject != "" {
		fmt.Fprintf(stdout, "Subject:     %s\n", safetext.Escape(a.Subject))
	}
	fmt.Fprintf(stdout, "Size:        %d bytes\n\n", a.Size)
	for _, e := range m.Events {
		line := e.Time.Local().Format(traceTimeLayout+".000") + "  " + e.Kind
		if e.Attempts > 0 {
			line += fmt.Sprintf("  attempt %d", e.Attempts)
		}
		if e.Reference != "" {
			label := "reference"
			if e.Kind == trace.Bounced {
				label = "bounce"
			}
			line += "  " + label + " " + safetext.Escape(e.Reference)
		}
		if e.Reason != "" {
			line += "  " + safetext.Escape(oneLine(e.Reason))
		}
		fmt.Fprintln(stdout, line)
	}
	return nil
}

// tracedMessage is a message as -json prints it.
type tracedMessage struct {
	ID        string        `json:"id"`
	Accepted  time.Time     `json:"accepted"`
	Client    string        `json:"client"`
	Identity  string        `json:"identity"`
	Mailbox   string        `json:"mailbox"`
	From      string        `json:"from"`
	To        []string      `json:"to"`
	Size      int64         `json:"size"`
	MessageID string        `json:"message_id"`
	Subject   string        `json:"subject,omitempty"`
	State     string        `json:"state"`
	Attempts  int           `json:"attempts"`
	Reference string        `json:"reference"`
	Reason    string        `json:"reason,omitempty"`
	BounceID  string        `json:"bounce_id,omitempty"`
	Events    []tracedEvent `json:"events"`
}

type tracedEvent struct {
	Time      time.Time `json:"time"`
	Event     string    `json:"event"`
	Attempts  int       `json:"attempts,omitempty"`
	Reference string    `json:"reference,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

func printTraceJSON(res *trace.Result, stdout io.Writer) error {
	out := []tracedMessage{}
	for _, m := range res.Messages {
		a := m.Accepted
		t := tracedMessage{ID: a.ID, Accepted: a.Time, Client: a.Client, Identity: a.Identity, Mailbox: a.Mailbox,
			From: a.From, To: a.To, Size: a.Size, MessageID: a.MessageID, Subject: a.Subject, State: m.State,
			Attempts: m.Attempts, Reference: m.Reference, Reason: m.Reason, BounceID: m.Bounce}
		for _, e := range m.Events {
			t.Events = append(t.Events, tracedEvent{Time: e.Time, Event: e.Kind, Attempts: e.Attempts, Reference: e.Reference, Reason: e.Reason})
		}
		out = append(out, t)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // Message-IDs keep their <>
	return enc.Encode(out)
}
