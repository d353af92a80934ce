package main

import (
	"context"
	"maps"
	"sync"

	"github.com/cfsync/cfsync/internal/state"
	"github.com/cfsync/cfsync/internal/tokenring"
)

// ringCache is the ring as a run last read it, kept across warm
// invocations. The refresher is the ring's only writer and records every
// write in the ring state (DynamoDB, read consistently by every run before
// the ring), so while the ring state shows no write since the read, the
// copy is the ring: runs use it instead of reading Secrets Manager, also
// when they refresh (docs/cost.md). Forced and revoke runs (the operator's)
// read the ring.
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
	if c.vals == nil || c.gen != st.Generation || !maps.EqualFunc(c.slots, st.Slots, sameWrite) {
		return nil, false
	}
	return c.vals, true
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
