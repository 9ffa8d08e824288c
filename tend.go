package logx

import (
	"os"
	"time"
)

// catalogEvent queues a catalog change for tend (the default stream's
// apply calls it: it must not block).
func (n *node) catalogEvent(ev catalogEvent) {
	n.mu.Lock()
	n.events = append(n.events, ev)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// tend is the node's goroutine: it acts on catalog changes in log order,
// and every balanceEvery ElectionTimeouts loads changed TLS files again,
// checks the peers' certificates, marks idle streams, spreads the leaders
// and, while a stream it leads has older apply rules than this logx knows,
// has them adopted on a goroutine of its own, one call at a time
// (adoptRules, rules.go). Until the catalog lists every declared stream (they start only
// then), it has them recorded, every quarter ElectionTimeout, on a
// goroutine of its own, one try at a time (recordDeclared): a try commits
// a command, or asks the leader to, and a leader that cannot commit (its
// followers answer its heartbeats but store nothing) held it, and with it
// all of the above, until Close (TestTendWithoutQuorum).
func (n *node) tend() {
	defer close(n.done)
	t := time.NewTicker(balanceEvery * n.cfg.ElectionTimeout)
	defer t.Stop()
	fast := time.NewTicker(n.cfg.ElectionTimeout / 4)
	defer fast.Stop()
	declared := fast.C
	recorded := make(chan bool, 1) // a try's answer: all recorded
	recording := false
	adopted := make(chan struct{}, 1) // adoptRules returned
	adopting := false
	defer func() {
		if recording {
			<-recorded // Close has begun: the try's waits end (stopCtx)
		}
		if adopting {
			<-adopted
		}
	}()
	for {
		select {
		case <-n.stop:
			return
		case <-n.wake:
			n.mu.Lock()
			evs := n.events
			n.events = nil
			n.mu.Unlock()
			for k, ev := range evs {
				select {
				case <-n.stop: // the next start reconciles the rest (New)
					n.mu.Lock()
					n.events = append(evs[k:], n.events...)
					n.mu.Unlock()
					return
				default:
				}
				n.applyEvent(ev)
			}
		case <-declared:
			if !recording {
				recording = true
				go func() { recorded <- n.list()[0].recordDeclared() }()
			}
		case all := <-recorded:
			recording = false
			if all {
				declared = nil // all recorded: stop asking
			}
		case <-t.C:
			if n.tlsFiles != nil {
				if changed, err := n.tlsFiles.reload(false); changed {
					n.list()[0].logf("logx: TLS files changed: loaded again")
				} else if err != nil {
					n.list()[0].logf("logx: TLS files changed but do not load (the material in use stays): %v", err)
				}
			}
			n.checkPeerCerts()
			for _, s := range n.list() {
				s.checkIdle()
				s.checkVoters()
				s.dropStaleNonvoters()
			}
			n.balanceOnce()
			if !adopting && n.rulesDue() {
				adopting = true
				go func() { n.adoptRules(); adopted <- struct{}{} }()
			}
		case <-adopted:
			adopting = false
		}
	}
}

// applyEvent opens a stream the catalog created or closes one it deleted.
// What fails here is logged: the stream is then missing on this node until
// it restarts.
func (n *node) applyEvent(ev catalogEvent) {
	name := ev.entry.Spec.Name
	def := n.list()[0]
	if ev.deleted {
		// Stopped and moved aside before it leaves the list, so that
		// DeleteStream returns once its files are where it says. If the
		// node's Close begins meanwhile, it closes this stream beside the
		// others (a second stop waits for this one) rather than after it,
		// and the next start moves the directory aside (New).
		if s := n.get(name); s != nil {
			stopped := make(chan error, 1)
			go func() { stopped <- s.stop() }()
			select {
			case err := <-stopped:
				if err != nil {
					def.logf("logx: closing deleted stream %q: %v", name, err)
				}
			case <-n.stop:
				return
			}
		}
		if err := retireStreamDir(n.cfg.Dir, ev.entry); err != nil {
			def.logf("logx: moving deleted stream %q's directory aside: %v", name, err)
		}
		n.remove(name)
		return
	}
	if s := n.get(name); s != nil {
		s.bootstrapIfEmpty(ev.entry.Voters) // a declared stream waiting for the catalog
		return
	}
	if _, err := os.Stat(deletedDir(n.cfg.Dir, ev.entry)); err == nil {
		return // a replay of the creation of a stream deleted since
	}
	if err := n.open(ev.entry.Spec.config(), ev.entry.Voters, false); err != nil {
		def.logf("logx: opening stream %q: %v", name, err)
		n.mu.Lock()
		n.openErr[name] = err
		n.changedLocked()
		n.mu.Unlock()
	}
}
