package bench

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LevelTime is how long one level took, from `launch --plain` events.
type LevelTime struct {
	Level    int           `json:"level"`
	Duration time.Duration `json:"duration_ns"`
}

// ParseLevelTimes reads the plain event stream of the launch command
// ("15:04:05.000 L2 level.start: ..." then "... L2 level.done ...") and
// returns each level's duration in level order. The clock in those lines
// has millisecond resolution, which is why the harness also reports the
// whole run's wall time measured by itself. A level that started but never
// finished is an error: its duration would be a guess.
func ParseLevelTimes(source string, r io.Reader) ([]LevelTime, error) {
	start := map[int]time.Duration{}
	var out []LevelTime
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	line := 0
	for sc.Scan() {
		line++
		f := strings.Fields(sc.Text())
		if len(f) < 3 || (f[2] != "level.start:" && f[2] != "level.start" && f[2] != "level.done") {
			continue
		}
		at, err := parseClock(f[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: time %q: %w", source, line, f[0], err)
		}
		lv, err := strconv.Atoi(strings.TrimPrefix(f[1], "L"))
		if err != nil || !strings.HasPrefix(f[1], "L") || lv < 1 {
			return nil, fmt.Errorf("%s:%d: level %q: want L<n> with n >= 1", source, line, f[1])
		}
		if f[2] != "level.done" {
			start[lv] = at
			continue
		}
		s, ok := start[lv]
		if !ok {
			return nil, fmt.Errorf("%s:%d: level %d is done but never started", source, line, lv)
		}
		d := at - s
		if d < 0 { // the run crossed midnight
			d += 24 * time.Hour
		}
		out = append(out, LevelTime{Level: lv, Duration: d})
		delete(start, lv)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: read: %w", source, line, err)
	}
	for lv := range start {
		return nil, fmt.Errorf("%s: level %d started but never finished", source, lv)
	}
	slices.SortFunc(out, func(a, b LevelTime) int { return a.Level - b.Level })
	return out, nil
}

func parseClock(s string) (time.Duration, error) {
	t, err := time.Parse("15:04:05.000", s)
	if err != nil {
		return 0, err
	}
	return time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute +
		time.Duration(t.Second())*time.Second + time.Duration(t.Nanosecond()), nil
}
