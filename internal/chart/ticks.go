package chart

import (
	"math"
	"time"
)

// A timeTick is a round time on the axis and its label.
type timeTick struct {
	t     time.Time
	label string
}

// timeSteps are the tick spacings the time axis chooses from: round in
// local time (a clock face, midnights, weeks), never "every 1h 47m".
var timeSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour,
}

const day = 24 * time.Hour

// timeTicks returns round ticks in [from, to] in loc, about one per
// minGap of the axis' width in pixels, labelled as a reader of a clock
// and a calendar expects: times of day, and the date at midnight.
func timeTicks(from, to time.Time, loc *time.Location, width, minGap float64) []timeTick {
	span := to.Sub(from)
	if span <= 0 || width <= 0 {
		return nil
	}
	want := max(1, int(width/minGap))
	step := timeSteps[len(timeSteps)-1]
	for _, s := range timeSteps {
		if span/s <= time.Duration(want) {
			step = s
			break
		}
	}
	if span/step > time.Duration(want) { // longer than the longest step: months
		n := int(math.Ceil(float64(span) / float64(want) / float64(30*day)))
		return monthTicks(from, to, loc, n)
	}
	var ticks []timeTick
	t := firstTick(from, step, loc)
	for ; !t.After(to); t = nextTick(t, step, loc) {
		if t.Before(from) {
			continue
		}
		ticks = append(ticks, timeTick{t, tickLabel(t.In(loc), step)})
	}
	return ticks
}

// firstTick is the first round time at or before from for step: whole
// local days (weeks start on Monday) for day steps, else whole multiples
// of step since local midnight.
func firstTick(from time.Time, step time.Duration, loc *time.Location) time.Time {
	l := from.In(loc)
	midnight := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, loc)
	if step >= day {
		if step == 7*day || step == 14*day {
			midnight = midnight.AddDate(0, 0, -((int(midnight.Weekday()) + 6) % 7))
		}
		return midnight
	}
	since := l.Sub(midnight)
	return midnight.Add(since / step * step)
}

// nextTick steps by calendar days for day steps (a day with a clock
// change is not 24 hours long) and by the clock otherwise, starting again
// at each midnight so ticks stay on round local times.
func nextTick(t time.Time, step time.Duration, loc *time.Location) time.Time {
	if step >= day {
		return t.In(loc).AddDate(0, 0, int(step/day))
	}
	n := t.Add(step)
	l, nl := t.In(loc), n.In(loc)
	if nl.Day() != l.Day() {
		return time.Date(nl.Year(), nl.Month(), nl.Day(), 0, 0, 0, 0, loc)
	}
	return n
}

func tickLabel(t time.Time, step time.Duration) string {
	midnight := t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0
	switch {
	case step >= day || midnight:
		return t.Format("Jan 2")
	case step < time.Minute:
		return t.Format("15:04:05")
	default:
		return t.Format("15:04")
	}
}

func monthTicks(from, to time.Time, loc *time.Location, every int) []timeTick {
	l := from.In(loc)
	// Months divisible by the step from January: Jan, Mar, May …
	m := (int(l.Month())-1)/every*every + 1
	t := time.Date(l.Year(), time.Month(m), 1, 0, 0, 0, 0, loc)
	var ticks []timeTick
	for ; !t.After(to); t = t.AddDate(0, every, 0) {
		if !t.Before(from) {
			label := t.Format("Jan")
			if t.Month() == time.January {
				label = t.Format("2006")
			}
			ticks = append(ticks, timeTick{t, label})
		}
	}
	return ticks
}

// roundTo drops the float noise of adding steps (0.30000000000000004).
func roundTo(v, step float64) float64 {
	d := math.Max(0, -math.Floor(math.Log10(step))+1)
	p := math.Pow(10, d)
	return math.Round(v*p) / p
}
