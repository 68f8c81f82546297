package provbus_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"nightshift/internal/amqpbus"
	"nightshift/internal/busid"
	"nightshift/internal/testsupport/amqptest"
	"nightshift/provisioner"
	"nightshift/provisioner/provbus"
	"nightshift/provisioner/provisionertest"
)

// eventualDriver looks to the provisioner as the ec2 worker driver does:
// its List may miss a live instance, and it keeps instances in more than
// one place, which Locate tells it about.
type eventualDriver struct {
	*provisionertest.Driver
	mu      sync.Mutex
	located []json.RawMessage
}

func (d *eventualDriver) ListIsEventual() bool { return true }

func (d *eventualDriver) Locate(_ context.Context, specs []json.RawMessage) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.located = append(d.located, specs...)
	return nil
}

// fakeManagement is the part of RabbitMQ's management API WorkerUsers.List
// uses: list users, delete one.
type fakeManagement struct {
	mu    sync.Mutex
	users []string
}

func (m *fakeManagement) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/users":
		var out []map[string]string
		for _, u := range m.users {
			out = append(out, map[string]string{"name": u})
		}
		json.NewEncoder(w).Encode(out)
	case r.Method == http.MethodDelete && strings.HasPrefix(r.URL.Path, "/api/users/"):
		name := strings.TrimPrefix(r.URL.Path, "/api/users/")
		m.users = slices.DeleteFunc(m.users, func(u string) bool { return u == name })
		w.WriteHeader(http.StatusNoContent)
	default:
		http.NotFound(w, r)
	}
}

func (m *fakeManagement) have() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := slices.Clone(m.users)
	slices.Sort(out)
	return out
}

// TestWorkerUsersPassOnLocateAndEventualLists: the provisioner sees the
// real driver through WorkerUsers, so Locate (every region the ledger
// names) and the eventual-list rule must pass through it, or a restarted
// provisioner judges workers outside the default region from one list.
// Over an eventually consistent driver a user whose instance one List
// misses is kept, and deleted only when the next List misses it too; over
// a driver whose List is the truth it is deleted at once.
func TestWorkerUsersPassOnLocateAndEventualLists(t *testing.T) {
	amqptest.NeedBroker(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	run := amqptest.UniqueName(t, "wu")
	bus, err := amqpbus.Dial(ctx, amqpbus.Config{URL: amqptest.URL(), Run: run, Name: "users-test", Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	user := func(id string) string { return busid.WorkerUser(run, id) }

	for _, eventual := range []bool{true, false} {
		mgmt := &fakeManagement{users: []string{user("a"), user("b"), user("c"), user("gone")}}
		srv := httptest.NewServer(mgmt)
		fake := provisionertest.NewDriver(run)
		var inner provisioner.Driver = fake
		ev := &eventualDriver{Driver: fake}
		if eventual {
			inner = ev
		}
		var wu provisioner.Driver = &provbus.WorkerUsers{Driver: inner, Admin: busid.Admin{URL: srv.URL}, Bus: bus, Run: run}
		for _, id := range []string{"a", "b", "c"} {
			fake.Plant(provisioner.Owned{Job: "j", InstanceID: id})
		}

		el, ok := wu.(provisioner.EventualLister)
		if !ok || el.ListIsEventual() != eventual {
			t.Errorf("eventual %v: WorkerUsers is an EventualLister %v saying %v", eventual, ok, ok && el.ListIsEventual())
		}
		loc, ok := wu.(provisioner.Locator)
		if !ok {
			t.Fatalf("WorkerUsers hides its driver's Locate")
		}
		spec := json.RawMessage(`{"instance":{"region":"us-west-2"}}`)
		if err := loc.Locate(ctx, []json.RawMessage{spec}); err != nil {
			t.Fatal(err)
		}
		if eventual && (len(ev.located) != 1 || string(ev.located[0]) != string(spec)) {
			t.Errorf("Locate reached the driver with %s, want %s", ev.located, spec)
		}

		// b is missed by one list only; c by two in a row; "gone" never
		// had an instance.
		fake.Vanish("b")
		fake.Vanish("c")
		if _, err := wu.List(ctx); err != nil {
			t.Fatal(err)
		}
		want := []string{user("a")}
		if eventual {
			want = []string{user("a"), user("b"), user("c"), user("gone")}
		}
		if got := mgmt.have(); !slices.Equal(got, want) {
			t.Errorf("eventual %v: after one list missing b, c and gone, users %v, want %v", eventual, got, want)
		}
		fake.Plant(provisioner.Owned{Job: "j", InstanceID: "b"})
		if _, err := wu.List(ctx); err != nil {
			t.Fatal(err)
		}
		if eventual {
			want = []string{user("a"), user("b")}
		}
		if got := mgmt.have(); !slices.Equal(got, want) {
			t.Errorf("eventual %v: after a second list missing c and gone, users %v, want %v", eventual, got, want)
		}
		srv.Close()
	}
}

// uidDriver picks uid 7 for every instance, as the local driver picks
// uids of their own.
type uidDriver struct{ *provisionertest.Driver }

func (uidDriver) PickUIDs(_ context.Context, _ json.RawMessage, n int, _ func() (map[uint32]bool, error)) ([]uint32, error) {
	return slices.Repeat([]uint32{7}, n), nil
}

// TestWorkerUsersPassOnPickUIDs: the provisioner reaches the local
// driver's uid picker through WorkerUsers, or every isolated local worker
// of a run with per-worker broker users would share one Unix user.
func TestWorkerUsersPassOnPickUIDs(t *testing.T) {
	var wu provisioner.Driver = &provbus.WorkerUsers{Driver: uidDriver{provisionertest.NewDriver("r")}, Run: "r"}
	p, ok := wu.(provisioner.UIDPicker)
	if !ok {
		t.Fatal("WorkerUsers is no UIDPicker")
	}
	got, err := p.PickUIDs(context.Background(), nil, 2, func() (map[uint32]bool, error) { return nil, nil })
	if err != nil || !slices.Equal(got, []uint32{7, 7}) {
		t.Errorf("PickUIDs through WorkerUsers = %v, %v; want the driver's [7 7]", got, err)
	}
	plain := &provbus.WorkerUsers{Driver: provisionertest.NewDriver("r"), Run: "r"}
	if got, err := plain.PickUIDs(context.Background(), nil, 2, nil); err != nil || got != nil {
		t.Errorf("PickUIDs over a driver without uids = %v, %v; want none", got, err)
	}
}
