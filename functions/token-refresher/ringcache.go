package main

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"sync"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
)

// ringCache is the ring as a run last read it, or as this instance's last
// write left it, kept across warm invocations. The refresher is the ring's
// only writer and records every write in the ring state (DynamoDB, read
// consistently by every run before the ring), so while the ring state is
// the one the copy was kept with, the copy is the ring: runs use it
// instead of reading Secrets Manager, also when they refresh
// (docs/cost.md). Forced and revoke runs (the operator's) read the ring.
type ringCache struct {
	mu    sync.Mutex
	gen   int64
	slots map[string]state.SlotWrite
	vals  []tokenring.SlotValue
}

// get returns the cached ring if st shows no write since it was read.
func (c *ringCache) get(st *state.RingState) ([]tokenring.SlotValue, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.holds(st) {
		return nil, false
	}
	return c.vals, true
}

// holds reports whether the cache is the ring as of ring state st.
func (c *ringCache) holds(st *state.RingState) bool {
	return c.vals != nil && c.gen == st.Generation && maps.EqualFunc(c.slots, st.Slots, sameWrite)
}

// wrote keeps the ring as a successful write of v left it: the write's
// claim moved the ring state from prev to next. Only when the cache held
// the ring as of prev: the claim is conditional on prev's generation, so
// no other write came between. Otherwise (another instance's claim came
// first, or this run's earlier write of another slot failed and may have
// landed: its claim moved the ring state) the cache stays keyed on an
// older ring state and the next run reads the ring.
func (c *ringCache) wrote(prev, next *state.RingState, v tokenring.SlotValue) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.holds(prev) {
		return
	}
	i := slices.IndexFunc(c.vals, func(s tokenring.SlotValue) bool { return s.ID == v.ID })
	if i < 0 {
		c.vals = nil
		return
	}
	vals := slices.Clone(c.vals)
	vals[i] = v
	c.gen, c.slots, c.vals = next.Generation, maps.Clone(next.Slots), vals
}

// put keeps vals, read when the ring state was st; a ring with an unusable
// slot is not kept.
func (c *ringCache) put(st *state.RingState, vals []tokenring.SlotValue) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.vals = nil
	for _, v := range vals {
		if v.Err != nil {
			return
		}
	}
	c.gen, c.slots, c.vals = st.Generation, maps.Clone(st.Slots), vals
}

func sameWrite(a, b state.SlotWrite) bool {
	return a.Generation == b.Generation && a.WrittenAt.Equal(b.WrittenAt)
}

// readRing sets the run's ring: the cached copy when mayCache and it is
// still the ring, else read from Secrets Manager.
func (r *run) readRing(ctx context.Context, mayCache bool) error {
	h := r.h
	vals, ok := []tokenring.SlotValue(nil), false
	if mayCache {
		vals, ok = h.cache.get(r.ringSt)
	}
	if !ok {
		var err error
		if vals, err = h.ring.Read(ctx); err != nil {
			return err
		}
		for _, v := range vals {
			if v.Err != nil {
				r.log.Warn("token ring slot unusable", "slot", v.ID, "error", v.Err.Error())
			}
		}
		h.cache.put(r.ringSt, vals)
	}
	r.vals = vals
	r.latest, r.have = tokenring.Slot{}, false
	if l, found := tokenring.Latest(vals); found {
		r.latest, r.have = l.Slot, true
	}
	return nil
}

// keepWritten keeps the ring as this run's write of slot to slotID left it
// (see ringCache.wrote); prev is the ring state the write's claim replaced.
// The slot is kept as a read would parse it, its version dated now (no
// earlier than Secrets Manager's date of the version: the slot is not
// rewritten sooner than after a read).
func (r *run) keepWritten(prev *state.RingState, slotID string, slot tokenring.Slot) {
	b, err := json.Marshal(slot)
	if err != nil {
		return
	}
	parsed, err := tokenring.ParseSlot(string(b))
	if err != nil {
		return
	}
	r.h.cache.wrote(prev, r.ringSt, tokenring.SlotValue{ID: slotID, Slot: parsed, VersionCreated: r.h.now()})
}
