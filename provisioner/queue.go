package provisioner

import (
	"context"
	"sync"
)

// queue is a deduplicating work queue of instance ids with client-go
// workqueue semantics: an id is never handed out twice at once, and an id
// added while it is being processed is handed out again once Done is
// called. That is what stops two workers launching the same instance.
type queue struct {
	mu         sync.Mutex
	items      []string
	queued     map[string]bool
	processing map[string]bool
	dirty      map[string]bool
	wake       chan struct{}
}

func newQueue() *queue {
	return &queue{
		queued:     map[string]bool{},
		processing: map[string]bool{},
		dirty:      map[string]bool{},
		wake:       make(chan struct{}, 1),
	}
}

func (q *queue) Add(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.processing[id] {
		q.dirty[id] = true
		return
	}
	if q.queued[id] {
		return
	}
	q.queued[id] = true
	q.items = append(q.items, id)
	q.signal()
}

// AddIdle is Add for an id that is not being processed; one that is
// gets nothing (Add would hand it out again once it is done).
func (q *queue) AddIdle(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.processing[id] || q.queued[id] {
		return
	}
	q.queued[id] = true
	q.items = append(q.items, id)
	q.signal()
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Get blocks until an id is available or ctx ends.
func (q *queue) Get(ctx context.Context) (string, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			id := q.items[0]
			q.items[0] = ""
			q.items = q.items[1:]
			delete(q.queued, id)
			q.processing[id] = true
			if len(q.items) > 0 {
				q.signal()
			}
			q.mu.Unlock()
			return id, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", false
		case <-q.wake:
		}
	}
}

func (q *queue) Done(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.processing, id)
	if q.dirty[id] {
		delete(q.dirty, id)
		if !q.queued[id] {
			q.queued[id] = true
			q.items = append(q.items, id)
			q.signal()
		}
	}
}

// Len counts ids waiting or in progress.
func (q *queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items) + len(q.processing)
}

// GetBatch is Get for up to max ids at once: it blocks until at least one
// is available or ctx ends, and hands out every id it returns as Get
// would.
func (q *queue) GetBatch(ctx context.Context, max int) ([]string, bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			n := min(max, len(q.items))
			ids := make([]string, n)
			copy(ids, q.items[:n])
			clear(q.items[:n])
			q.items = q.items[n:]
			for _, id := range ids {
				delete(q.queued, id)
				q.processing[id] = true
			}
			if len(q.items) > 0 {
				q.signal()
			}
			q.mu.Unlock()
			return ids, true
		}
		q.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, false
		case <-q.wake:
		}
	}
}

// Processing reports whether id has been handed out and is not done yet.
func (q *queue) Processing(id string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.processing[id]
}
