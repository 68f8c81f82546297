package sitter

import (
	"os"
	"testing"
)

func TestProcStat(t *testing.T) {
	pgid, start, err := procStat(os.Getpid())
	if err != nil || pgid <= 0 || start == 0 {
		t.Fatalf("procStat(self) = %d %d %v", pgid, start, err)
	}
	if _, _, err := procStat(-5); err == nil {
		t.Error("procStat of a bad pid: want error")
	}
}
