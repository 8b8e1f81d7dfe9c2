package testtools

import "testing"

// stopRecorder records how Require stopped the test, without stopping the
// test that runs it.
type stopRecorder struct {
	testing.TB
	stoppedBy string
}

type stopped struct{}

func (r *stopRecorder) Fatalf(string, ...any) { r.stoppedBy = "Fatalf"; panic(stopped{}) }
func (r *stopRecorder) Skipf(string, ...any)  { r.stoppedBy = "Skipf"; panic(stopped{}) }

// requireMissing runs Require for a program that does not exist.
func requireMissing(t *testing.T) string {
	r := &stopRecorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != (stopped{}) {
				panic(v)
			}
		}()
		Require(r, "smtpgw-no-such-program", "nothing to install")
	}()
	return r.stoppedBy
}

func TestRequireFindsAProgram(t *testing.T) {
	if path := Require(t, "sh", "apt-get install dash"); path == "" {
		t.Error("sh not found")
	}
}

func TestRequireSkipsOutsideCI(t *testing.T) {
	t.Setenv("CI", "")
	if got := requireMissing(t); got != "Skipf" {
		t.Errorf("a missing program outside CI stopped the test with %q, want Skipf", got)
	}
}

func TestRequireFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "true")
	if got := requireMissing(t); got != "Fatalf" {
		t.Errorf("a missing program under CI stopped the test with %q, want Fatalf", got)
	}
}
