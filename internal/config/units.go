package config

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// sizeUnits are the suffixes Size accepts, longest first so that "MiB" is
// not read as "B".
var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30},
	{"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30},
	{"B", 1},
}

// UnmarshalText reads "35MiB", "10MB", "512KiB" or a bare byte count.
func (s *Size) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	factor := int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(strings.ToUpper(str), strings.ToUpper(u.suffix)) {
			str, factor = strings.TrimSpace(str[:len(str)-len(u.suffix)]), u.factor
			break
		}
	}
	n, err := strconv.ParseFloat(str, 64)
	if err != nil || n < 0 || n*float64(factor) > 1<<50 {
		return fmt.Errorf("invalid size %q (want e.g. \"35MiB\", \"10MB\" or a byte count)", text)
	}
	*s = Size(n * float64(factor))
	return nil
}

func (s Size) String() string {
	switch {
	case s >= 1<<20 && s%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", s>>20)
	case s >= 1<<10 && s%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", s>>10)
	}
	return fmt.Sprintf("%dB", int64(s))
}

// UnmarshalText reads Go durations ("90s", "1h30m") and whole days ("2d").
func (d *Duration) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	if days, ok := strings.CutSuffix(str, "d"); ok {
		n, err := strconv.Atoi(days)
		if err == nil && n >= 0 {
			*d = Duration(time.Duration(n) * 24 * time.Hour)
			return nil
		}
	}
	v, err := time.ParseDuration(str)
	if err != nil || v < 0 {
		return fmt.Errorf("invalid duration %q (want e.g. \"90s\", \"10m\", \"48h\" or \"2d\")", text)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText reads "2027-06-30", and the RFC 3339 text that a TOML date
// written without quotes reaches it as.
func (d *Date) UnmarshalText(text []byte) error {
	str := strings.TrimSpace(string(text))
	t, err := time.Parse(time.DateOnly, str)
	if err != nil {
		t, err = time.Parse(time.RFC3339, str)
	}
	if err != nil {
		return fmt.Errorf("invalid date %q (want e.g. 2027-06-30)", text)
	}
	d.Time = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return nil
}
