package amqpbus

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"nightshift/internal/envelope"
)

// answer is the reply type of the tests' registry.
type answer struct {
	Echo  string `json:"echo"`
	Error string `json:"error,omitempty"`
}

func (*answer) Validate() error { return nil }

func askRegistry() *envelope.Registry {
	r := testRegistry()
	r.Register("answer", 1, func() envelope.Validator { return &answer{} }, false)
	return r
}

func replyJSON(t *testing.T, typ string, body any) []byte {
	t.Helper()
	e, err := envelope.NewEnvelope(typ, 1, "r", "test", body, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeReply(t *testing.T) {
	reg := askRegistry()
	good := replyJSON(t, "answer", answer{Echo: "x"})
	cases := []struct {
		name    string
		raw     []byte
		max     int
		want    answer
		wantErr string
	}{
		{name: "the reply", raw: good, want: answer{Echo: "x"}},
		// A newer peer's reply, with a field this side does not know yet,
		// is read all the same (Ask and every typed client come here).
		{name: "a newer peer's reply", raw: replyJSON(t, "answer", map[string]any{"echo": "x", "uid": 61184}), want: answer{Echo: "x"}},
		{name: "a command with an unknown field", raw: replyJSON(t, "launch", map[string]any{"count": 1, "cuont": 2}), wantErr: `field "cuont": unknown field`},
		{name: "another registered type", raw: replyJSON(t, "launch", launch{Count: 1}), wantErr: `message "launch" is not "answer"`},
		{name: "not an envelope", raw: []byte(`{"echo":"x"}`), wantErr: "decode reply:"},
		{name: "unknown type", raw: replyJSON(t, "mystery", answer{}), wantErr: "decode reply:"},
		{name: "over the limit", raw: good, max: 10, wantErr: "oversized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := DecodeReply[answer](reg, c.raw, "answer", c.max)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("err = %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("DecodeReply = %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// TestAsk makes typed calls over the real broker: the answer is decoded as
// the reply type, a refusal in the reply is left to the caller, and a
// server that answers with the wrong type is an error naming the request.
func TestAsk(t *testing.T) {
	f := newFixture(t, "svc")
	ready := make(readyCounter, 4)
	srvCfg := f.config("server")
	srvCfg.OnConsume = ready.hook
	server, client := f.dial(srvCfg), f.dial(f.config("client"))
	reg := askRegistry()
	f.consume(server, "svc", func(ctx context.Context, d Delivery) error {
		env, body, err := reg.Decode(d.Body, MaxMessageSize)
		if err != nil {
			t.Errorf("server got %s: %v", d.Body, err)
			return nil
		}
		l := body.(*launch)
		var out []byte
		switch l.Count {
		case 1:
			out = replyJSON(t, "answer", answer{Echo: env.ID})
		case 2:
			out = replyJSON(t, "answer", answer{Error: "no capacity"})
		default:
			out = replyJSON(t, "launch", launch{Count: 1})
		}
		return server.Reply(ctx, d, out)
	})
	ready.wait(t, 1)
	ask := func(count int) (answer, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return Ask[answer](ctx, client, Request{Registry: reg, Sender: "test", Component: "svc", Type: "launch",
			Body: launch{Count: count}, Now: time.Now(), ReplyType: "answer"})
	}
	if r, err := ask(1); err != nil || r.Echo == "" {
		t.Errorf("Ask = %+v, %v; want the echoed id", r, err)
	}
	if r, err := ask(2); err != nil || r.Error != "no capacity" {
		t.Errorf("Ask(refused) = %+v, %v; want the refusal in the reply", r, err)
	}
	if _, err := ask(3); err == nil || !strings.Contains(err.Error(), `launch: decode reply: message "launch" is not "answer"`) {
		t.Errorf("Ask(wrong reply type) = %v", err)
	}
}

// TestAnswer is Ask's server side over the real broker: the typed answer
// reaches the caller decoded, and a delivery nobody waits on is answered
// with nothing and no error.
func TestAnswer(t *testing.T) {
	f := newFixture(t, "svc")
	ready := make(readyCounter, 4)
	srvCfg := f.config("server")
	srvCfg.OnConsume = ready.hook
	server, client := f.dial(srvCfg), f.dial(f.config("client"))
	reg := askRegistry()
	f.consume(server, "svc", func(ctx context.Context, d Delivery) error {
		env, _, err := reg.Decode(d.Body, MaxMessageSize)
		if err != nil {
			t.Errorf("server got %s: %v", d.Body, err)
			return nil
		}
		return server.Answer(ctx, d, "answer", "svc", answer{Echo: env.ID}, time.Now())
	})
	ready.wait(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := Ask[answer](ctx, client, Request{Registry: reg, Sender: "test", Component: "svc", Type: "launch",
		Body: launch{Count: 1}, Now: time.Now(), ReplyType: "answer"})
	if err != nil || r.Echo == "" {
		t.Errorf("Ask = %+v, %v; want the echoed id", r, err)
	}
	if err := server.Answer(ctx, Delivery{}, "answer", "svc", answer{}, time.Now()); err != nil {
		t.Errorf("Answer without reply-to = %v, want nil", err)
	}
}
