package ec2test

import (
	"context"
	"testing"

	"nightshift/internal/nsenv"
)

// A moto named by NIGHTSHIFT_MOTO_URL that launches unknown images is
// passed over for a private one that refuses them.
func TestURLReplacesMotoWithoutAMIValidation(t *testing.T) {
	lax := start(t, false)
	if err := validatesAMIs(context.Background(), lax); err == nil {
		t.Fatalf("moto started without AMI validation passed the probe")
	}
	t.Setenv(nsenv.MotoURL, lax)
	u := URL(t)
	if u == lax {
		t.Fatalf("URL kept %s, which does not validate AMIs", lax)
	}
	if err := validatesAMIs(context.Background(), u); err != nil {
		t.Fatalf("URL returned %s: %v", u, err)
	}
}

// A validating moto named by NIGHTSHIFT_MOTO_URL is used as is.
func TestURLKeepsValidatingMoto(t *testing.T) {
	strict := start(t, true)
	t.Setenv(nsenv.MotoURL, strict)
	if u := URL(t); u != strict {
		t.Fatalf("URL = %s, want the given %s", u, strict)
	}
}
