package process

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"nightshift/internal/testsupport"
)

// A real line (kernel 5.x, `sleep 300`), fields 1-52.
const sleepStat = "4242 (sleep) S 4241 4241 4100 34816 4242 4194304 101 0 0 0 7 3 0 0 20 0 1 0 313390 " +
	"5763072 129 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

var sleepWant = Stat{State: 'S', PPID: 4241, PGID: 4241, SID: 4100, UTime: 7, STime: 3, Threads: 1, StartTicks: 313390, RSSPages: 129}

func TestParseStat(t *testing.T) {
	withComm := func(comm string) string { return strings.Replace(sleepStat, "(sleep)", comm, 1) }
	zombie := sleepWant
	zombie.State = 'Z'
	cases := []struct {
		name, line string
		want       Stat
		err        string
	}{
		{name: "sleep", line: sleepStat, want: sleepWant},
		{name: "comm with spaces", line: withComm("(my worker 2)"), want: sleepWant},
		{name: "comm with parentheses", line: withComm("((sd-pam))"), want: sleepWant},
		{name: "comm with spaces and parentheses", line: withComm("(a) b (c)"), want: sleepWant},
		{name: "comm that looks like fields", line: withComm("(x) Z 1 1 1 (y)"), want: sleepWant},
		{name: "empty comm", line: withComm("()"), want: sleepWant},
		{name: "zombie", line: strings.Replace(sleepStat, ") S ", ") Z ", 1), want: zombie},
		{name: "no trailing newline", line: strings.TrimSuffix(sleepStat, "\n"), want: sleepWant},
		{name: "cut after rss", line: sleepStat[:strings.Index(sleepStat, " 1844674")], want: sleepWant},
		{name: "empty", line: "", err: "stat: no fields after (comm)"},
		{name: "no comm", line: "4242 sleep S 1 2 3", err: "stat: no fields after (comm)"},
		{name: "nothing after comm", line: "4242 (sleep)", err: "stat: no fields after (comm)"},
		{name: "truncated", line: "4242 (sleep) S 4241 4241 4100", err: "stat: field rss: missing"},
		{name: "bad state", line: strings.Replace(sleepStat, ") S ", ") SS ", 1), err: `stat: field state: "SS"`},
		{name: "negative rss", line: strings.Replace(sleepStat, " 129 ", " -129 ", 1), err: `stat: field rss: "-129" is not a non-negative integer`},
		{name: "bad ppid", line: strings.Replace(sleepStat, "S 4241", "S x41", 1), err: `stat: field ppid: "x41"`},
		{name: "bad session", line: strings.Replace(sleepStat, " 4100 ", " 41a0 ", 1), err: `stat: field session: "41a0"`},
		{name: "pgrp out of range", line: strings.Replace(sleepStat, "S 4241 4241", "S 4241 4294967296", 1), err: "stat: field pgrp: 4294967296 is out of range"},
		{name: "overflow utime", line: strings.Replace(sleepStat, " 7 3 ", " 99999999999999999999 3 ", 1), err: "stat: field utime:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseStat([]byte(c.line))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want containing %q", err, c.err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("ParseStat = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

func TestComm(t *testing.T) {
	cases := map[string]string{
		sleepStat:               "sleep",
		"7 (a) b (c)) S 1":      "a) b (c)",
		"7 (my worker 2) R 1 2": "my worker 2",
		"7 () S":                "",
		"7 sleep S":             "",
		"7 )x( S":               "",
	}
	for line, want := range cases {
		if got := Comm([]byte(line)); got != want {
			t.Errorf("Comm(%q) = %q, want %q", line, got, want)
		}
	}
}

func TestParseStatAllocatesNothing(t *testing.T) {
	b := []byte(sleepStat)
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseStat(b) }); n != 0 {
		t.Errorf("ParseStat allocates %v times per call, want 0", n)
	}
}

func TestReadStat(t *testing.T) {
	st, err := ReadStat("", os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if st.PPID != os.Getppid() || st.Threads < 1 || st.RSSPages == 0 || st.StartTicks == 0 || st.Zombie() {
		t.Errorf("own stat = %+v (ppid %d)", st, os.Getppid())
	}
	if pgid, _ := syscallGetpgid(); st.PGID != pgid {
		t.Errorf("own pgrp = %d, want %d", st.PGID, pgid)
	}

	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "7", "stat"), []byte("7 (x) S 1"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadStat(root, 7); err == nil || !strings.Contains(err.Error(), filepath.Join(root, "7", "stat")+": stat: field rss: missing") {
		t.Errorf("ReadStat(bad line) = %v, want an error naming the file and field", err)
	}
	if _, err := ReadStat(root, 8); !os.IsNotExist(err) {
		t.Errorf("ReadStat(missing pid) = %v, want not-exist", err)
	}
}

func TestParseUint(t *testing.T) {
	cases := []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0", 0, true},
		{"18446744073709551615", 1<<64 - 1, true},
		{"18446744073709551616", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"1 ", 0, false},
		{"123456789012345678901", 0, false},
	}
	for _, c := range cases {
		if got, ok := ParseUint([]byte(c.in)); got != c.want || ok != c.ok {
			t.Errorf("ParseUint(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// FuzzParseStat: any bytes give a stat or an error naming the field, never
// a panic; a parsed line keeps its numbers when comm changes.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte(sleepStat))
	f.Add([]byte("1 ((x)) R 0 1 1 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 5 0 0"))
	f.Add([]byte("1 (x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStat(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "stat: ") {
				t.Fatalf("error %q does not say where it came from", err)
			}
			return
		}
		i := strings.LastIndexByte(string(b), ')')
		renamed := append([]byte("9 (a (b) c)"), b[i+1:]...)
		if again, err := ParseStat(renamed); err != nil || again != st {
			t.Fatalf("same fields after another comm: %+v, %v; want %+v", again, err, st)
		}
		if st.Threads < 0 || st.PPID < 0 || st.PGID < 0 || st.SID < 0 {
			t.Fatalf("negative field from %q: %+v", b, st)
		}
	})
}

func TestAlive(t *testing.T) {
	if !Alive(os.Getpid()) {
		t.Error("Alive(self) = false")
	}
	if Alive(-1) {
		t.Error("Alive(-1) = true")
	}
	// Not reaped until the end, so once killed the child stays a zombie.
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if !Alive(pid) {
		t.Fatal("a running child is not alive")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = testsupport.Poll(10*time.Second, func() error {
		if Alive(pid) {
			return errors.New("still alive")
		}
		return nil
	}) // judged below
	st, err := ReadStat("", pid)
	if err != nil || !st.Zombie() || Alive(pid) {
		t.Errorf("killed, unreaped child: stat %+v, %v; Alive = %v; want a zombie that is not alive", st, err, Alive(pid))
	}
	cmd.Wait()
}
