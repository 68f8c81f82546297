package workeruser

import (
	"context"
	"os/user"
	"strings"
	"sync"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"nightshift-worker", true}, {"_svc", true}, {"1001", true},
		{"", false}, {"Root", false}, {"a b", false}, {"../x", false}, {"-x", false},
		{strings.Repeat("a", 33), false}, {"x\n", false},
	} {
		if err := CheckName(tc.name); (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// fakeDB is a passwd that Create adds to.
type fakeDB struct {
	mu      sync.Mutex
	users   map[string]*user.User
	creates int
}

func (f *fakeDB) lookup(name string) (*user.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if u, ok := f.users[name]; ok {
		return u, nil
	}
	return nil, user.UnknownUserError(name)
}

func (f *fakeDB) create(_ context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates++
	f.users[name] = &user.User{Username: name, Uid: "999", Gid: "998"}
	return nil
}

// TestDefaultUserCreatedOnce: many launches resolving the default user
// create it once, concurrently or not.
func TestDefaultUserCreatedOnce(t *testing.T) {
	db := &fakeDB{users: map[string]*user.User{}}
	u := &Users{Lookup: db.lookup, Create: db.create}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id, err := u.Resolve(context.Background(), "", "")
			if err != nil || id.UID != 999 || id.GID != 998 || id.Name != DefaultName {
				t.Errorf("Resolve = %+v, %v", id, err)
			}
		}()
	}
	wg.Wait()
	if db.creates != 1 {
		t.Fatalf("created %d times, want 1", db.creates)
	}
	if c := (Identity{UID: 5, GID: 6}).Credential(); c.Uid != 5 || c.Gid != 6 || c.Groups == nil || len(c.Groups) != 0 {
		t.Fatalf("credential %+v: want uid, gid and an empty (not nil) group list", c)
	}
}

// TestNamedUserMustExist: a user a job names is never created, so a typo
// fails the launch instead of adding an account.
func TestNamedUserMustExist(t *testing.T) {
	db := &fakeDB{users: map[string]*user.User{"batch": {Username: "batch", Uid: "1200", Gid: "1200"}}}
	u := &Users{Lookup: db.lookup, Create: db.create,
		LookupGroup: func(name string) (*user.Group, error) {
			if name == "crunch" {
				return &user.Group{Name: name, Gid: "1300"}, nil
			}
			return nil, user.UnknownGroupError(name)
		}}
	if _, err := u.Resolve(context.Background(), "bacth", ""); err == nil || !strings.Contains(err.Error(), "bacth") {
		t.Fatalf("unknown named user: err %v", err)
	}
	if db.creates != 0 {
		t.Fatal("a named user was created")
	}
	id, err := u.Resolve(context.Background(), "batch", "crunch")
	if err != nil || id.UID != 1200 || id.GID != 1300 {
		t.Fatalf("batch/crunch = %+v, %v", id, err)
	}
	if _, err := u.Resolve(context.Background(), "batch", "nogroup-here"); err == nil {
		t.Fatal("unknown group accepted")
	}
	if _, err := u.Resolve(context.Background(), "Bad Name", ""); err == nil {
		t.Fatal("bad name accepted")
	}
}

// FuzzCheckName: whatever CheckName accepts is one path element and one
// argument (it becomes part of a useradd command line and of messages).
func FuzzCheckName(f *testing.F) {
	for _, s := range []string{"nightshift-worker", "1001", "", "../x", "-r", "a b", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if CheckName(name) != nil {
			return
		}
		if name == "" || len(name) > 32 || strings.ContainsAny(name, "/.\x00 \n=:") || strings.HasPrefix(name, "-") {
			t.Fatalf("accepted %q", name)
		}
	})
}
