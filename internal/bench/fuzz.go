package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// FuzzTarget is one fuzz target of a package, as `go test -list` names it.
type FuzzTarget struct {
	Package string `json:"package"` // import path
	Name    string `json:"name"`    // e.g. FuzzParse
}

// fuzzName is what go test -list prints for a fuzz target: the function
// name alone on its line.
var fuzzName = regexp.MustCompile(`^Fuzz[A-Za-z0-9_]*$`)

// ParseTestList reads the output of `go test -json -list '^Fuzz' PKGS` and
// returns the fuzz targets in package then name order, and the packages
// whose tests did not build or list (so their targets are missing, not
// absent). Lines that are not JSON events (go's own chatter) are skipped;
// a line that starts like an event but does not decode is an error naming
// source:line.
func ParseTestList(source string, r io.Reader) (targets []FuzzTarget, broken []string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 || b[0] != '{' {
			continue
		}
		var ev struct {
			Action  string
			Package string
			Test    string
			Output  string
		}
		if err := json.Unmarshal(b, &ev); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: test event: %w", source, line, err)
		}
		switch {
		case ev.Package == "" || ev.Test != "":
		case ev.Action == "output" && fuzzName.MatchString(strings.TrimSpace(ev.Output)):
			targets = append(targets, FuzzTarget{Package: ev.Package, Name: strings.TrimSpace(ev.Output)})
		case ev.Action == "fail":
			broken = append(broken, ev.Package)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s:%d: read: %w", source, line, err)
	}
	slices.SortFunc(targets, func(a, b FuzzTarget) int {
		if c := strings.Compare(a.Package, b.Package); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	targets = slices.Compact(targets)
	slices.Sort(broken)
	return targets, slices.Compact(broken), nil
}

// FuzzRun is what one `go test -fuzz` run reported.
type FuzzRun struct {
	// Execs and NewInteresting come from the last progress line
	// ("fuzz: elapsed: 1m0s, execs: N (R/sec), new interesting: K (total: T)").
	Execs          int64 `json:"execs"`
	NewInteresting int   `json:"new_interesting"`
	Total          int   `json:"total"`
	// Progress says a progress line was seen at all; without one the
	// target never started fuzzing (a build error, a failing seed).
	Progress bool `json:"progress"`
	// Passed is go test's verdict: a final "ok" or "PASS" line and no
	// "--- FAIL".
	Passed bool `json:"passed"`
	// FailingInputs are the paths go test wrote crashers to, relative to
	// the package directory.
	FailingInputs []string `json:"failing_inputs,omitempty"`
}

var progressLine = regexp.MustCompile(`^fuzz: elapsed: \S+, execs: (\d+) \(\d+/sec\), new interesting: (\d+) \(total: (\d+)\)$`)

// ParseFuzzOutput reads the text output of one `go test -fuzz` run. A
// progress line that is garbled is an error naming source:line, because a
// silently dropped count would under-report the corpus.
func ParseFuzzOutput(source string, r io.Reader) (FuzzRun, error) {
	var out FuzzRun
	failed, ok := false, false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(text, "fuzz: elapsed:") && strings.Contains(text, "execs:"):
			m := progressLine.FindStringSubmatch(text)
			if m == nil {
				return out, fmt.Errorf("%s:%d: fuzz progress line %q: want \"fuzz: elapsed: D, execs: N (R/sec), new interesting: K (total: T)\"", source, line, text)
			}
			execs, err1 := strconv.ParseInt(m[1], 10, 64)
			nw, err2 := strconv.Atoi(m[2])
			total, err3 := strconv.Atoi(m[3])
			if err1 != nil || err2 != nil || err3 != nil {
				return out, fmt.Errorf("%s:%d: fuzz progress line %q: count out of range", source, line, text)
			}
			out.Execs, out.NewInteresting, out.Total, out.Progress = execs, nw, total, true
		case strings.HasPrefix(text, "Failing input written to "):
			out.FailingInputs = append(out.FailingInputs, strings.TrimSpace(strings.TrimPrefix(text, "Failing input written to ")))
		case strings.HasPrefix(text, "--- FAIL"), text == "FAIL", strings.HasPrefix(text, "FAIL\t"):
			failed = true
		case text == "PASS", strings.HasPrefix(text, "ok "), strings.HasPrefix(text, "ok\t"):
			ok = true
		}
	}
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("%s:%d: read: %w", source, line, err)
	}
	out.Passed = ok && !failed
	return out, nil
}
