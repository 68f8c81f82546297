package launchplan

import "fmt"

// suggest returns " (did you mean X?)" for the candidate closest to word
// within edit distance 2, or "" when none is close enough. Ties go to the
// alphabetically first candidate so messages are stable.
func suggest(word string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if c == word {
			continue
		}
		// One pass, no sorted copy: a hostile plan asks for thousands of
		// suggestions among thousands of names.
		if d := editDistance(word, c, bestD+1); d < bestD || d == bestD && best != "" && c < best {
			best, bestD = c, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// editDistance is the Levenshtein distance between a and b, giving up with
// limit once it is certain to reach it (keys are short, but a fuzzer's are not).
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	var bufs [2][32]int // names are short: no allocation for them
	prev, cur := bufs[0][:0], bufs[1][:0]
	if len(b)+1 > len(bufs[0]) {
		prev, cur = make([]int, 0, len(b)+1), make([]int, 0, len(b)+1)
	}
	prev, cur = prev[:len(b)+1], cur[:len(b)+1]
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			rowMin = min(rowMin, cur[j])
		}
		if rowMin >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}
