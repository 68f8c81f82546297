package localservice

import (
	"errors"
	"fmt"
	"os"

	"nightshift/launchplan"
)

// readOutputs reads and removes the boot output file. A missing file means
// the program exported nothing. The file is removed once read because the
// engine persists the attributes, and stale files must not pile up in a
// WorkDir that later boots reuse.
func readOutputs(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("boot outputs: %w", err)
	}
	out, err := launchplan.ReadOutputs(path, f)
	f.Close()
	if err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil {
		return nil, fmt.Errorf("boot outputs: %w", err)
	}
	return out, nil
}
