package main

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// With -rounds N the selected rows run N times in turn: the netns pairs'
// CPU per request and maximum rate swing from run to run (bench/results/
// issue17.md), so one run's ratio says little. The report's rows are then
// each number's median over the rounds, its goals are judged on those
// medians, and each goal also shows every round's measure and in how many
// rounds it was met.

// medianRows is one row per target of the rounds, in the first round's
// order, each number the median of that target's rows (a row that failed
// in some round is the median of the rounds it ran in).
func medianRows(rounds []*Report) []Row {
	var out []Row
	for _, first := range rounds[0].Rows {
		var rows []Row
		for _, r := range rounds {
			if w := r.row(first.Target); w != nil {
				rows = append(rows, *w)
			}
		}
		out = append(out, medianRow(rows))
	}
	return out
}

// medianRow is rows[0] with each integer and floating-point field replaced
// by its median over rows (the mean of the middle two for an even count).
func medianRow(rows []Row) Row {
	m := rows[0]
	mv := reflect.ValueOf(&m).Elem()
	for i := range mv.NumField() {
		f := mv.Field(i)
		switch f.Kind() {
		case reflect.Float64:
			vals := make([]float64, len(rows))
			for j := range rows {
				vals[j] = reflect.ValueOf(rows[j]).Field(i).Float()
			}
			f.SetFloat(median(vals))
		case reflect.Int, reflect.Int64:
			vals := make([]float64, len(rows))
			for j := range rows {
				vals[j] = float64(reflect.ValueOf(rows[j]).Field(i).Int())
			}
			f.SetInt(int64(median(vals)))
		}
	}
	return m
}

func median(vals []float64) float64 {
	s := slices.Clone(vals)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// addRounds records, for each of r's goals, every round's measure and in
// how many rounds it was met.
func (r *Report) addRounds(rounds []*Report) {
	r.Rounds = len(rounds)
	for i := range r.Targets {
		t := &r.Targets[i]
		for _, rr := range rounds {
			for _, rt := range rr.Targets {
				if rt.Goal == t.Goal {
					t.PerRound = append(t.PerRound, rt.Measured)
					if rt.Met {
						t.MetRounds++
					}
				}
			}
		}
	}
}

// roundsCells are a goal's "met in" and "each round" cells.
func (t Target) roundsCells() (string, string) {
	return fmt.Sprintf("%d of %d", t.MetRounds, len(t.PerRound)), strings.Join(t.PerRound, "; ")
}
