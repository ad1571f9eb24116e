package testenv

import (
	"fmt"
	"strings"
	"testing"
)

// fakeTB records how Skip ended a test, without ending this one.
type fakeTB struct {
	testing.TB
	skipped, failed string
}

func (f *fakeTB) Helper()                       {}
func (f *fakeTB) Skipf(format string, a ...any) { f.skipped = fmt.Sprintf(format, a...) }
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.failed = fmt.Sprintf(format, a...)
}
func (f *fakeTB) Fatal(a ...any) { f.failed = fmt.Sprint(a...) }

func TestSkipOrFail(t *testing.T) {
	for _, tt := range []struct {
		env      string
		need     Need
		fail     bool
		errorish bool // the failure is about the variable itself
	}{
		{"", Redis, false, false},
		{"shared-data,chromium", Redis, false, false},
		{"shared-data, redis", Redis, true, false},
		{"redis", Redis, true, false},
		{"all", OpenCL, true, false},
		{"shared-data,,", SharedData, true, false},
		{"shared_data", SharedData, true, true}, // a typo fails, it does not skip
	} {
		t.Run(tt.env+"/"+string(tt.need), func(t *testing.T) {
			t.Setenv(EnvRequire, tt.env)
			f := &fakeTB{}
			Skip(f, tt.need, "no %s here", "thing")
			if got := f.failed != ""; got != tt.fail {
				t.Fatalf("failed %q, skipped %q; want failed=%v", f.failed, f.skipped, tt.fail)
			}
			if !tt.fail && !strings.Contains(f.skipped, string(tt.need)) {
				t.Errorf("skip reason %q does not name the need %q", f.skipped, tt.need)
			}
			if tt.fail && !strings.Contains(f.failed, "no thing here") != tt.errorish {
				t.Errorf("failure %q", f.failed)
			}
		})
	}
}
