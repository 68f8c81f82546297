package mgmt

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"nightshift/alert"
	"nightshift/alert/journal"
)

// DefaultAlertsRecent is how far back `mgmt alerts` lists resolved alerts.
const DefaultAlertsRecent = 24 * time.Hour

// AlertList is what `mgmt alerts RUN` shows, read from the run's alert
// journal: every alert firing now, the episodes resolved recently (newest
// first), and what became of their deliveries.
type AlertList struct {
	Firing []AlertView `json:"firing"`
	Recent []AlertView `json:"recent"`
	// Deliveries counts every delivery outcome in the journal by result
	// (delivered, failed, dropped).
	Deliveries map[string]int `json:"deliveries"`
}

// AlertView is one alert episode with the outcome of its deliveries by
// result.
type AlertView struct {
	alert.Event
	Deliveries map[string]int `json:"deliveries,omitempty"`
}

// ReadAlerts folds the journal's records into an AlertList at now, listing
// episodes resolved within recent.
func ReadAlerts(recs []journal.Record, now time.Time, recent time.Duration) AlertList {
	out := AlertList{Firing: []AlertView{}, Recent: []AlertView{}, Deliveries: map[string]int{}}
	firing := map[string]*AlertView{}
	var order []string
	var resolved []*AlertView
	byEpisode := map[string]*AlertView{} // key and status -> the view its deliveries count toward
	for _, r := range recs {
		switch {
		case r.Event != nil:
			ev := *r.Event
			v := &AlertView{Event: ev, Deliveries: map[string]int{}}
			if ev.Status == alert.Firing {
				if _, ok := firing[ev.Key]; !ok {
					order = append(order, ev.Key)
				}
				firing[ev.Key] = v
			} else {
				delete(firing, ev.Key)
				if now.Sub(ev.LastSeen) <= recent {
					resolved = append(resolved, v)
				}
			}
			byEpisode[ev.Key+"\x00"+string(ev.Status)] = v
		case r.Delivery != nil:
			d := r.Delivery
			out.Deliveries[d.Result]++
			if v, ok := byEpisode[d.Key+"\x00"+string(d.Status)]; ok {
				v.Deliveries[d.Result]++
			}
		}
	}
	for _, k := range order {
		if v, ok := firing[k]; ok {
			out.Firing = append(out.Firing, *v)
		}
	}
	slices.Reverse(resolved)
	for _, v := range resolved {
		out.Recent = append(out.Recent, *v)
	}
	return out
}

// WriteAlerts renders l for a person: one line per alert, firing first.
// line escapes (and the caller's redactor hides) each value.
func WriteAlerts(w io.Writer, l AlertList, line func(string) string) {
	row := func(v AlertView) {
		subject := v.Job
		if subject == "" {
			subject = "-"
		}
		when := v.FirstSeen.Local().Format("2006-01-02 15:04:05")
		if v.Status == alert.Resolved {
			when += " → " + v.LastSeen.Local().Format("15:04:05")
		}
		fmt.Fprintf(w, "%-9s %-8s %-22s %-12s %s  %s%s\n", strings.ToUpper(string(v.Status)), v.Severity, line(string(v.Kind)),
			line(subject), when, line(v.Summary), deliveries(v.Deliveries))
	}
	if len(l.Firing) == 0 {
		fmt.Fprintln(w, "no alerts firing")
	}
	for _, v := range l.Firing {
		row(v)
	}
	for _, v := range l.Recent {
		row(v)
	}
	if len(l.Deliveries) > 0 {
		fmt.Fprintf(w, "deliveries:%s\n", deliveries(l.Deliveries))
	}
}

func deliveries(m map[string]int) string {
	var parts []string
	for _, r := range []string{journal.Delivered, journal.Failed, journal.Dropped} {
		if m[r] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[r], r))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " [" + strings.Join(parts, ", ") + "]"
}

// AlertsOptions are `mgmt alerts`'s inputs.
type AlertsOptions struct {
	// Journal is the run's alert journal (runlayout.Run.Alerts).
	Journal string
	JSON    bool
	// Recent is how far back resolved alerts are listed (default
	// DefaultAlertsRecent).
	Recent time.Duration
	Now    time.Time
	Stdout io.Writer
	// Line redacts and escapes one value for a person; EncodeJSON writes
	// v for programs, redacted.
	Line       func(string) string
	EncodeJSON func(io.Writer, any) error
}

// ShowAlerts prints the run's alerts: firing and recent, as a table or JSON.
func ShowAlerts(ctx context.Context, o AlertsOptions) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if o.Recent <= 0 {
		o.Recent = DefaultAlertsRecent
	}
	recs, err := journal.ReadJournal(o.Journal)
	if err != nil {
		return err
	}
	l := ReadAlerts(recs, o.Now, o.Recent)
	if o.JSON {
		return o.EncodeJSON(o.Stdout, l)
	}
	WriteAlerts(o.Stdout, l, o.Line)
	return nil
}
