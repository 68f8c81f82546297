package launchplan

import (
	"bytes"
	"strings"

	"github.com/BurntSushi/toml"
)

// locator answers "on which line is this key?" for one parsed TOML text.
// Keys are paths without array indices, as the decoder records them, and
// the lines come from the scan that checked the limits: asking the decoder
// costs a pass over the whole text per key (it works out a column nobody
// needs), which made loading quadratic in the number of services. A file
// with several [[level]] tables is also split into one locator per level
// (see chunkLocators), because a path repeated in every level has only its
// last line here.
type locator struct {
	md   *toml.MetaData
	root map[string]toml.Primitive
	// lines maps NUL-joined key paths to lines; see layout.lines.
	lines map[string]int
	// offset is added to every line: the locator of a chunk of a file.
	offset int
}

func newLocator(text string, lines map[string]int) (*locator, error) {
	var root map[string]toml.Primitive
	md, err := toml.Decode(text, &root)
	if err != nil {
		return nil, err
	}
	return &locator{md: &md, root: root, lines: lines}, nil
}

// line returns the line of path, or of its nearest ancestor that has one, or 0.
func (l *locator) line(path ...string) int {
	if l == nil {
		return 0
	}
	for n := len(path); n > 0; n-- {
		if ln := l.lines[strings.Join(path[:n], "\x00")]; ln > 0 {
			return ln + l.offset
		}
	}
	return 0
}

// chunkLocators returns one locator per [[level]] table of a top plan file,
// each built from the text between that header and the next, its lines
// offset to be those of the whole file. Keys that repeat in every level
// (parallelism, file) then resolve to their own level's line. Nil entries
// mean "use the whole-file locator".
func chunkLocators(data []byte, lines []int, levels int) []*locator {
	if len(lines) != levels || levels < 2 {
		return nil
	}
	all := bytes.SplitAfter(data, []byte("\n"))
	out := make([]*locator, levels)
	for i, start := range lines {
		end := len(all)
		if i+1 < len(lines) {
			end = lines[i+1] - 1
		}
		if start-1 > len(all) || end > len(all) || start-1 > end {
			return nil
		}
		// Scanned alone rather than padded with the lines before it: padding
		// made the chunks together quadratic in the number of levels. The
		// limits were checked on the whole file; the budget here is spare.
		spare := budget{bytes: MaxFileSize, keys: MaxKeys, values: MaxValues}
		lay, err := scan(bytes.Join(all[start-1:end], nil), &spare)
		if err != nil {
			return nil
		}
		out[i] = &locator{lines: lay.lines, offset: start - 1}
	}
	return out
}
