package main

import "context"

// slotPool bounds the ranges in flight of the whole invocation — every
// message of a batch shares it — and recycles their buffers: at most n
// buffers exist at a time, each as large as the part it holds. With P =
// PARALLEL_RANGES that bounds the download buffers by P × part size whatever
// the file sizes; a buffer whose size no longer fits (much larger or smaller
// than the next part) is dropped for the garbage collector, which is what
// the "+1" part of the documented bound part size × (P + 1) allows for.
type slotPool struct {
	ch chan *[]byte
	// gather lets one acquireAll at a time hold slots while it waits for
	// more: two could otherwise each hold part of what the other waits for.
	gather chan struct{}
}

func newSlotPool(n int) *slotPool {
	p := &slotPool{ch: make(chan *[]byte, n), gather: make(chan struct{}, 1)}
	for range n {
		p.ch <- new([]byte)
	}
	return p
}

// acquire waits for a free slot and returns its buffer resized to size.
func (p *slotPool) acquire(ctx context.Context, size int64) (*[]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case b := <-p.ch:
		if c := int64(cap(*b)); c < size || c > 2*size+minPartSize {
			*b = nil // let the old one go before allocating the new one
			*b = make([]byte, size)
		}
		*b = (*b)[:size]
		return b, nil
	}
}

// release gives a slot back.
func (p *slotPool) release(b *[]byte) { p.ch <- b }

// acquireAll waits for one slot per size (at most the pool's n), all or
// none. Besides other acquireAll calls (which take turns), a slot is held
// only by a range in flight, or by a multipart part waiting for the parts
// before it to be hashed — which hold slots themselves, being dispatched in
// order — so every slot it waits for is released in time.
func (p *slotPool) acquireAll(ctx context.Context, sizes []int64) ([]*[]byte, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case p.gather <- struct{}{}:
	}
	defer func() { <-p.gather }()
	bufs := make([]*[]byte, 0, len(sizes))
	for _, n := range sizes {
		b, err := p.acquire(ctx, n)
		if err != nil {
			for _, b := range bufs {
				p.release(b)
			}
			return nil, err
		}
		bufs = append(bufs, b)
	}
	return bufs, nil
}
