package provisioner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"nightshift"
	"nightshift/internal/amqpbus"
	"nightshift/internal/envelope"
	"nightshift/provisioner"
	"nightshift/provisioner/provisionertest"
)

func envelopeJSON(t testing.TB, typ string, body string) []byte {
	t.Helper()
	env := map[string]any{
		"type": typ, "version": 1, "id": "m1", "run": "r1", "sender": "test",
		"time": time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "body": json.RawMessage(body),
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMalformedMessagesNameTypeAndField(t *testing.T) {
	reg := provisioner.Messages()
	cases := []struct {
		name, typ, body string
		wantField       string
	}{
		{"count zero", provisioner.TypeLaunch, `{"launch_id":"a","job":"web","count":0}`, "count"},
		{"count not a number", provisioner.TypeLaunch, `{"launch_id":"a","job":"web","count":"3"}`, "count"},
		{"missing launch id", provisioner.TypeLaunch, `{"job":"web","count":1}`, "launch_id"},
		{"path in job", provisioner.TypeLaunch, `{"launch_id":"a","job":"../x","count":1}`, "job"},
		{"a spec of its own", provisioner.TypeLaunch, `{"launch_id":"a","job":"web","count":1,"spec":{"worker":{"command":["sh","-c","id"]}}}`, "spec"},
		{"no spec digest", provisioner.TypeLaunch, `{"launch_id":"a","job":"web","count":1}`, "spec_digest"},
		{"engine with a command", provisioner.TypeLaunch, `{"launch_id":"a","job":"web","count":1,"spec_digest":"sha256:` + strings.Repeat("a", 64) + `","engine":{"command":["sh"]}}`, "command"},
		{"unknown field", provisioner.TypeLaunch, `{"launch_id":"a","job":"web","count":1,"cuont":2}`, "cuont"},
		{"no ids", provisioner.TypeTerminate, `{"instance_ids":[]}`, "instance_ids"},
		{"empty id", provisioner.TypeTerminate, `{"instance_ids":["a",""]}`, "instance_ids[1]"},
		{"bad describe job", provisioner.TypeDescribe, `{"job":"a b"}`, "job"},
		{"health of a bad job", provisioner.TypeHealth, `{"job":"a b","healthy":["x"]}`, "job"},
		{"health with an empty id", provisioner.TypeHealth, `{"job":"web","healthy":["x",""]}`, "healthy[1]"},
		{"healthy and unhealthy at once", provisioner.TypeHealth, `{"job":"web","healthy":["x"],"unhealthy":["y","x"]}`, "unhealthy[1]"},
		{"health with a field of its own", provisioner.TypeHealth, `{"job":"web","healthy":["x"],"dns":"evil"}`, "dns"},
		{"event without state", provisioner.TypeInstance, `{"instance":{"id":"x","state":"sideways"}}`, "instance.state"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := reg.Decode(envelopeJSON(t, c.typ, c.body), 1<<20)
			var de *envelope.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want *envelope.DecodeError", err)
			}
			if de.Type != c.typ || de.Field != c.wantField {
				t.Errorf("error names type %q field %q, want %q %q (%v)", de.Type, de.Field, c.typ, c.wantField, err)
			}
		})
	}
}

func TestDestructiveCommandsNeedSignatures(t *testing.T) {
	reg := provisioner.Messages()
	for typ, want := range map[string]bool{
		provisioner.TypeLaunch: true, provisioner.TypeDescribe: false,
		provisioner.TypeTerminate: true, provisioner.TypeTerminateAll: true, provisioner.TypeEnable: true,
		// Health decides who is in a pool's DNS record: signed, like
		// every command that changes anything.
		provisioner.TypeHealth: true,
	} {
		if got := reg.Destructive(typ); got != want {
			t.Errorf("Destructive(%s) = %v, want %v", typ, got, want)
		}
	}
}

func TestHandleDispatchesCommands(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	ctx := context.Background()
	req := provisionertest.Launch(h.cfg.Jobs, "L1", "web", 2)
	r := h.p.Handle(ctx, &req)
	if r.Error != "" || len(r.Instances) != 2 {
		t.Fatalf("launch reply = %+v", r)
	}
	h.idle()
	r = h.p.Handle(ctx, &provisioner.DescribeBody{Job: "web", History: true})
	if r.Live != 2 || len(r.Instances) != 2 || r.Instances[0].State != nightshift.StateRunning || len(r.Instances[0].History) != 3 {
		t.Fatalf("describe reply = %+v", r)
	}
	h.p.Terminate(ctx, []string{r.Instances[0].ID})
	h.idle()
	r = h.p.Handle(ctx, &provisioner.DescribeBody{LiveOnly: true})
	if r.Live != 1 || len(r.Instances) != 1 || r.Instances[0].History != nil {
		t.Fatalf("live-only describe without history = %+v", r)
	}
	r = h.p.Handle(ctx, &provisioner.TerminateBody{InstanceIDs: []string{"nope"}})
	if !r.NotFound || r.Error == "" {
		t.Errorf("terminate unknown: reply = %+v, want not_found", r)
	}
	r = h.p.Handle(ctx, &provisioner.TerminateAllBody{})
	if r.Error != "" || !r.Disabled {
		t.Errorf("terminate_all reply = %+v", r)
	}
	h.idle()
	if r = h.p.Handle(ctx, &provisioner.TerminateAllBody{}); r.Live != 0 {
		t.Errorf("polled terminate_all: live = %d", r.Live)
	}
	if r = h.p.Handle(ctx, &provisioner.EnableBody{}); r.Error != "" {
		t.Errorf("enable: %s", r.Error)
	}
	if r = h.p.Handle(ctx, "junk"); !strings.Contains(r.Error, "not a provisioner command") {
		t.Errorf("junk body: reply = %+v", r)
	}
}

// FuzzDecodeMessage checks that no input makes the provisioner's decoder
// panic, and that whatever it accepts is valid and survives a round trip.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []struct{ typ, body string }{
		{provisioner.TypeLaunch, `{"launch_id":"a","job":"web","count":3,"spec_digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","engine":{"vars":{"k":"v"}}}`},
		{provisioner.TypeLaunch, `{"launch_id":"a","job":"web","count":3,"spec":{"worker":{"command":["sh"]}}}`},
		{provisioner.TypeTerminate, `{"instance_ids":["web-1"]}`},
		{provisioner.TypeDescribe, `{}`},
		{provisioner.TypeInstance, `{"instance":{"id":"x","state":"running"}}`},
	} {
		f.Add(envelopeJSON(f, s.typ, s.body))
	}
	reg := provisioner.Messages()
	f.Fuzz(func(t *testing.T, data []byte) {
		env, body, err := reg.Decode(data, 1<<16)
		if err != nil {
			return
		}
		v, ok := body.(envelope.Validator)
		if !ok {
			t.Fatalf("%s decoded to %T, not a Validator", env.Type, body)
		}
		if err := v.Validate(); err != nil {
			t.Fatalf("accepted %s body fails Validate: %v", env.Type, err)
		}
		re, err := json.Marshal(body)
		if err != nil {
			t.Fatalf("re-marshal %s: %v", env.Type, err)
		}
		env.Body = re
		b, _ := json.Marshal(env)
		if _, _, err := reg.Decode(b, 0); err != nil {
			t.Fatalf("round trip of accepted %s fails: %v", env.Type, err)
		}
		_ = fmt.Sprint(body)
	})
}

func TestReplySaysWhetherRetryingCanHelp(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	bad := provisionertest.Launch(h.cfg.Jobs, "L1", "web", 0)
	if r := h.p.Handle(ctx, &bad); r.Error == "" || r.Retryable {
		t.Errorf("invalid launch: %+v, want a final error", r)
	}
	h.store.Close() // the store fails from now on
	good := provisionertest.Launch(h.cfg.Jobs, "L1", "web", 1)
	if r := h.p.Handle(ctx, &good); r.Error == "" || !r.Retryable {
		t.Errorf("launch with a broken store: %+v, want a retryable error", r)
	}
}

// A controller's report on a pool larger than one message may carry is
// split into messages that each pass the provisioner's decoding (at most
// MaxCount ids, inside the bus's size limit, even of ids as long as
// Validate allows) and that together name every id once, in its list.
func TestHealthChunksEachValidateAndTogetherSayAll(t *testing.T) {
	reg := provisioner.Messages()
	for _, c := range []struct {
		name               string
		healthy, unhealthy int
		idLen              int
		minChunks          int
	}{
		{"none", 0, 0, 20, 1},
		{"small", 3, 2, 20, 1},
		{"over the count", provisioner.MaxCount + 7, 9000, 20, 2},
		{"long ids", 5000, 4000, 200, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := func(i int) string {
				s := fmt.Sprintf("web-%d-", i)
				return s + strings.Repeat("x", c.idLen-len(s))
			}
			b := provisioner.HealthBody{Job: "web"}
			for i := range c.healthy {
				b.Healthy = append(b.Healthy, id(i))
			}
			for i := range c.unhealthy {
				b.Unhealthy = append(b.Unhealthy, id(c.healthy+i))
			}
			chunks := b.Chunks()
			if len(chunks) < c.minChunks {
				t.Fatalf("%d chunks, want at least %d", len(chunks), c.minChunks)
			}
			said := map[string]bool{}
			for k, ch := range chunks {
				raw, err := json.Marshal(ch)
				if err != nil {
					t.Fatal(err)
				}
				data := envelopeJSON(t, provisioner.TypeHealth, string(raw))
				if _, _, err := reg.Decode(data, amqpbus.MaxMessageSize); err != nil {
					t.Fatalf("chunk %d (%d healthy, %d unhealthy, %d bytes) refused: %v", k, len(ch.Healthy), len(ch.Unhealthy), len(data), err)
				}
				if ch.Job != "web" {
					t.Fatalf("chunk %d of job %q", k, ch.Job)
				}
				for _, l := range []struct {
					ids     []string
					healthy bool
				}{{ch.Healthy, true}, {ch.Unhealthy, false}} {
					for _, id := range l.ids {
						if _, dup := said[id]; dup {
							t.Fatalf("%s in two chunks", id)
						}
						said[id] = l.healthy
					}
				}
			}
			if len(said) != c.healthy+c.unhealthy {
				t.Fatalf("chunks name %d ids, want %d", len(said), c.healthy+c.unhealthy)
			}
			for _, id := range b.Healthy {
				if !said[id] {
					t.Fatalf("%s healthy in the body, not in the chunks", id)
				}
			}
		})
	}
}
