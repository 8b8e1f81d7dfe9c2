package main

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/smtpgw/smtpgw/internal/trace"
)

func TestTraceTimesAndClients(t *testing.T) {
	now := time.Date(2026, 3, 2, 12, 0, 0, 0, time.Local)
	for _, c := range []struct {
		in   string
		want time.Time
	}{
		{"", time.Time{}},
		{"2h", now.Add(-2 * time.Hour)},
		{"7d", now.AddDate(0, 0, -7)},
		{"2026-03-01", time.Date(2026, 3, 1, 0, 0, 0, 0, time.Local)},
		{"2026-03-01 10:02", time.Date(2026, 3, 1, 10, 2, 0, 0, time.Local)},
		{"2026-03-01T10:02:00Z", time.Date(2026, 3, 1, 10, 2, 0, 0, time.UTC)},
	} {
		got, err := parseWhen("since", c.in, now)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseWhen(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	if _, err := parseWhen("since", "yesterday", now); !errors.Is(err, errUsage) {
		t.Errorf("parseWhen(yesterday): %v, want a usage error", err)
	}
	for in, want := range map[string]string{"192.168.7.12": "192.168.7.12/32", "192.168.7.0/24": "192.168.7.0/24", "192.168.7.9/24": "192.168.7.0/24", "::1": "::1/128"} {
		if got, err := parseClient(in); err != nil || got.String() != want {
			t.Errorf("parseClient(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := parseClient("printer"); !errors.Is(err, errUsage) {
		t.Errorf("parseClient(printer): %v, want a usage error", err)
	}
}

// The list says when a message was delivered or failed, and "-" for one
// still on its way.
func TestTraceListFinished(t *testing.T) {
	at := time.Date(2026, 3, 2, 12, 0, 0, 0, time.Local)
	res := &trace.Result{Messages: []*trace.Message{
		{Accepted: trace.Event{ID: "a1", Time: at}, State: trace.Delivered, Updated: trace.Event{Time: at.Add(time.Minute)}},
		{Accepted: trace.Event{ID: "b2", Time: at}, State: trace.Deferred, Updated: trace.Event{Time: at.Add(time.Minute)}},
	}}
	var out strings.Builder
	if err := printTraceList(res, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	// Fields: accepted date and time, ID, state, then the finished column.
	if f := strings.Fields(lines[1]); f[2] != "a1" || f[4]+" "+f[5] != "2026-03-02 12:01:00" {
		t.Errorf("delivered message listed as %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[2] != "b2" || f[4] != "-" {
		t.Errorf("deferred message listed as %q", lines[2])
	}
}
