package bench

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Point is one measurement of a scale curve: the cost at a size.
type Point struct {
	Size float64 `json:"size"`
	Cost float64 `json:"cost"`
}

// Growth verdicts of CheckLinear.
const (
	GrowthLinear      = "linear"
	GrowthSublinear   = "sublinear"
	GrowthSuperlinear = "superlinear"
)

// LinearSpreadLimit is the largest max/min spread of cost/size ratios that
// still counts as linear. Anything tighter would call noise on a shared
// 2-core machine "superlinear"; anything looser would hide an n·log n.
const LinearSpreadLimit = 2.0

// Linearity is the verdict on a scale curve.
type Linearity struct {
	Verdict string `json:"verdict"`
	// Spread is max(cost/size) / min(cost/size).
	Spread float64 `json:"spread"`
	// Ratios are cost/size per point, in the order given.
	Ratios []float64 `json:"ratios"`
	// LinearFrom is, for a curve that is not linear overall, the smallest
	// size from which the remaining (at least two) points are linear: a
	// fixed cost that swamps the smallest size says nothing about growth.
	// 0 when there is no such size.
	LinearFrom float64 `json:"linear_from,omitempty"`
}

// CheckLinear judges growth from the spread of cost/size ratios: under
// LinearSpreadLimit is linear; otherwise the direction of the ratio from the
// smallest to the largest size says whether a fixed cost dominates the
// small sizes (sublinear) or the per-item cost grows (superlinear).
func CheckLinear(points []Point) (Linearity, error) {
	if len(points) < 2 {
		return Linearity{}, fmt.Errorf("linearity: need at least 2 sizes, got %d", len(points))
	}
	var l Linearity
	lo, hi := math.Inf(1), math.Inf(-1)
	small, large := points[0], points[0]
	for i, p := range points {
		if !(p.Size > 0) || !(p.Cost > 0) || math.IsInf(p.Size, 0) || math.IsInf(p.Cost, 0) {
			return Linearity{}, fmt.Errorf("linearity: point %d: size %g and cost %g must be positive and finite", i+1, p.Size, p.Cost)
		}
		r := p.Cost / p.Size
		l.Ratios = append(l.Ratios, r)
		lo, hi = math.Min(lo, r), math.Max(hi, r)
		if p.Size < small.Size {
			small = p
		}
		if p.Size > large.Size {
			large = p
		}
	}
	if small.Size == large.Size {
		return Linearity{}, errors.New("linearity: all points have the same size")
	}
	l.Spread = hi / lo
	switch {
	case l.Spread < LinearSpreadLimit:
		l.Verdict = GrowthLinear
	case large.Cost/large.Size < small.Cost/small.Size:
		l.Verdict = GrowthSublinear
	default:
		l.Verdict = GrowthSuperlinear
	}
	if l.Verdict != GrowthLinear {
		l.LinearFrom = linearFrom(points)
	}
	return l, nil
}

func linearFrom(points []Point) float64 {
	sizes := make([]float64, 0, len(points))
	for _, p := range points {
		sizes = append(sizes, p.Size)
	}
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)
	for _, from := range sizes[1:] {
		var rest []Point
		for _, p := range points {
			if p.Size >= from {
				rest = append(rest, p)
			}
		}
		if len(rest) < 2 {
			break
		}
		if l, err := CheckLinear(rest); err == nil && l.Verdict == GrowthLinear {
			return from
		}
	}
	return 0
}
