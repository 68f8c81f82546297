package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"nightshift/internal/app"
)

func TestMgmtPlotUsage(t *testing.T) {
	home := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no job", []string{"plot", "-o", "x.svg", "local"}, app.ExitUsage, "want RUN JOB -o FILE.svg|FILE.png, got 1"},
		{"no file", []string{"plot", "local", "work"}, app.ExitUsage, "-o FILE.svg or -o FILE.png is required"},
		{"bad run", []string{"plot", "../x", "work", "-o", "x.svg"}, app.ExitUsage, ""},
		{"bad since", []string{"plot", "local", "work", "--since", "soon", "-o", "x.svg"}, app.ExitUsage, "since"},
		{"no runs", []string{"plot", "local", "work", "--since", "10m", "-o", "x.svg"}, 1, "no runs in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var o, e bytes.Buffer
			code := mgmtc(context.Background(), append([]string{"--home", home}, tc.args...), &o, &e)
			if code != tc.code || !strings.Contains(e.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, e.String(), tc.code, tc.want)
			}
		})
	}
}
