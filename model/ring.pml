/*
 * Promela model of the ring indices and the wait/wake protocol of
 * SecureChannel (Sources/SecureChannel/Ring/RingProducer.swift,
 * RingConsumer.swift and the "Waiting and waking" section of
 * Sources/SecureChannel/Channel/ChannelEndpoint.swift). Run through
 * scripts/model.sh; docs/PROTOCOL.md ("Model-checked protocol") says what
 * is checked and what is not.
 *
 * Two sides (proctype Side), each a single thread as in the code (an
 * endpoint is used by one thread at a time). Side 0 is the initiator: it
 * writes ring 0 and reads ring 1. In a one-way channel (-DONEWAY) ring 0 is
 * the only ring: side 0 writes it, side 1 reads it and writes nothing but
 * its consumer index.
 *
 * Granularity. Every frame takes one slot and an index counts frames, not
 * bytes: a padding frame is published by the same index store as the frame
 * after it (RingProducer.commit), so at the level of the indices a padded
 * frame is one bigger frame, and a wait for room ends on any move of the
 * consumer index whatever the sizes. The futex word is the low half of an
 * index; it cannot wrap during a wait (the index moves by at most the ring
 * size, far below 2^32, while the waiter waits), so the model uses the
 * index itself. Frame contents are not modelled except the close frame's
 * position (closeAt), which the producer writes before it publishes.
 *
 * Memory order (x86-TSO). Every shared word the protocol reads is written
 * only by the other side, so a side never needs store forwarding. A store
 * done with release or relaxed ordering goes into the side's FIFO store
 * buffer (sb*), which the side's Drain process empties into memory at any
 * moment; a load reads memory. A sequentially consistent store or RMW is a
 * locked instruction (XCHG / LOCK OR / LOCK AND): it waits until the buffer
 * is empty and then writes memory at once. Acquire and SC loads are both a
 * plain MOV on x86 and read memory. In the code as it is, every store the
 * protocol depends on is SC (producer and consumer index, waiting and
 * closed words), so the store buffer stays empty; the data copies are
 * plain stores that are followed by the SC index store, which drains them,
 * and are not modelled. -DRELEASE_CONSUMER (the code before da01c64) and
 * -DRELEASE_PRODUCER make the index stores release stores again.
 *
 * Futex (SimGuestPlatform.wait/notify): wait(word, expected) compares and
 * enqueues atomically (the kernel's hash-bucket lock) and returns at once
 * if the word differs; notify(word) wakes every sleeper on the word. The
 * Xen backend's event channel is at least as strong (a notify between the
 * compare and the poll leaves the port pending). The code sleeps at most
 * 10 ms; -DTIMEOUT lets a sleep return at any moment (timeout or EINTR).
 * Without it a sleeper wakes only on a notify, so a lost wake-up leaves a
 * side asleep for ever: an invalid end state.
 */

#ifndef SIZE
#define SIZE 2          /* ring slots */
#endif
#ifndef NMSG
#define NMSG 2          /* data messages a sending side sends */
#endif
#ifndef SPINS
#define SPINS 1         /* adaptive: extra polls before a sleep, at most */
#endif

/* Wait strategy of each side: WAIT_A for side 0, WAIT_B for side 1. */
#define BLOCK    0
#define ADAPTIVE 1
#define SPIN     2
#ifndef WAIT_A
#define WAIT_A ADAPTIVE
#endif
#ifndef WAIT_B
#define WAIT_B ADAPTIVE
#endif

/* Scripts: what each side's application does (-DSCRIPT=...). */
#define STREAM   0   /* 0: NMSG sends, close(); 1: receive until peerClosed, close() */
#define HALF     1   /* 0: NMSG sends, closeSending(), receive until peerClosed, close();
                        1: receive until peerClosed, NMSG sends, close() */
#define PINGPONG 2   /* 0: NMSG x (send, receive), close(); 1: receive/send until peerClosed, close() */
#define DUPLEX   3   /* both: NMSG sends, close() (nobody reads: both flushes end in peerClosed) */
#define QUITTER  4   /* 0: NMSG sends, close(); 1: one receive, close() (0's sends and flush
                        end in peerClosed when it left messages unread) */
#ifndef SCRIPT
#define SCRIPT STREAM
#endif

/* Shared words. idx[1..2]: producer index of ring 0/1; idx[3..4]: consumer index. */
#define WP(r) (1 + (r))
#define WC(r) (3 + (r))
byte idx[5];
byte waiting[2];          /* a side's waiting word: 1 waiting for data, 2 for space (bits 0, 1) */
byte closed[2];           /* a side's closed word: 1 sendingClosed, 2 stoppedReading (bits 0, 1) */
#define SENDING_CLOSED 1
#define STOPPED_READING 2
#define NONE 255
byte closeAt[2] = NONE;   /* ring content: the slot index of ring r's close frame */

/* Futex: the word a side sleeps on (0 = not asleep), and the value it
   expected there when it went to sleep. */
byte asleep[2];
byte expected[2];

/* Store buffers (two entries per side). */
#define SB 2
byte sbW[4];
byte sbV[4];
byte sbN[2];

/* Ghosts for the properties. */
byte consumedG[2];        /* ring r's consumer's private consumed index */
byte sentData[2];         /* data messages side s sent */
byte recvData[2];         /* data messages side s received */
bool stoppedG[2];         /* side s set stoppedReading (its own view of it) */
bool done[2];
byte result[2];           /* how side s's last close()/closeSending() ended (for trails) */
#define R_OK 1
#define R_PEERCLOSED 2

#ifdef ONEWAY
#define READER(s) ((s) == 1)
#define WRITES(s) ((s) == 0)
#define READS(s)  ((s) == 1)
#else
#define READER(s) false
#define WRITES(s) true
#define READS(s)  true
#endif

/* A locked instruction: waits for the store buffer to drain, then acts. */
#define LOCKED(s, action) atomic { sbN[s] == 0 -> action }

inline buffered_store(s, word, value) {
	atomic {
		sbN[s] < SB ->
		sbW[s * SB + sbN[s]] = word;
		sbV[s * SB + sbN[s]] = value;
		sbN[s]++
	}
}

proctype Drain(byte s) {
end:	do
	:: atomic {
		sbN[s] > 0 ->
		idx[sbW[s * SB]] = sbV[s * SB];
		sbW[s * SB] = sbW[s * SB + 1];
		sbV[s * SB] = sbV[s * SB + 1];
		sbW[s * SB + 1] = 0;
		sbV[s * SB + 1] = 0;
		sbN[s]--
	   }
	od
}

/* Ops of a script. */
#define OP_SEND   1   /* send one data message (blocking) */
#define OP_RECV   2   /* receive one message (blocking); peerClosed ends the script's receiving */
#define OP_RECVALL 3  /* receive until peerClosed */
#define OP_CLOSE  4   /* close() */
#define OP_HCLOSE 5   /* closeSending() */
#define OP_ECHO   6   /* receive; peerClosed -> stop, else send one, repeat */
#define MAXOPS 8
byte script[2 * MAXOPS];
byte nops[2];

/* Return addresses of the wait subroutine. */
#define RA_SEND 1
#define RA_FLUSH 2
#define RA_RECV 3

/* Invariants of the shared indices (as they are in memory). */
#define RING_OK(r) (idx[WC(r)] <= idx[WP(r)] && idx[WP(r)] - idx[WC(r)] <= SIZE)

proctype Side(byte s) {
	byte rout = s;              /* ring this side writes */
	byte rin = 1 - s;           /* ring this side reads */
	byte peer = 1 - s;
	byte strat = (s == 0 -> WAIT_A : WAIT_B);
	/* RingProducer */
	byte produced, cachedConsumed, pblf;
	/* RingConsumer */
	byte consumed, cachedProduced;
	/* ChannelEndpoint */
	bool sendClosed, peerClosed, receiveClosed;
	byte closeFrameAt;
	/* locals */
	byte pc, op, tmp, frame, observed, spun, ret, word, wbit, err;
	bool ok, isClose, fs, allow, prog;

#ifdef ONEWAY
	rin = 0;
#endif

next:
	if
	:: pc == nops[s] -> goto finish
	:: else -> op = script[s * MAXOPS + pc]; pc++
	fi;
	if
	:: op == OP_SEND -> isClose = false; goto send
	:: op == OP_RECV || op == OP_RECVALL || op == OP_ECHO -> goto receive
	:: op == OP_CLOSE -> goto close
	:: op == OP_HCLOSE -> goto closeSending
	fi;

/* ---- send / sendFrame: sendFrameNow, else waitForPeer(forSpace) and retry */
send:
	assert(WRITES(s));
	/* reserve: room by the cached consumer index, else refresh it (acquire) */
	if
	:: SIZE - (produced - cachedConsumed) >= 1 -> ok = true
	:: else ->
		tmp = idx[WC(rout)];
		assert(tmp >= cachedConsumed && tmp <= produced);   /* refreshConsumed's check */
		cachedConsumed = tmp;
		ok = (SIZE - (produced - cachedConsumed) >= 1)
	fi;
	if
	:: ok ->
		/* commit: the frame (and the close frame's position) first, then the index */
		if
		:: isClose -> closeAt[rout] = produced
		:: else
		fi;
		pblf = produced;
		produced++;
		if
		:: !isClose -> sentData[s]++     /* ghost: counted before it can be read */
		:: else
		fi;
#ifdef RELEASE_PRODUCER
		buffered_store(s, WP(rout), produced);
#else
		LOCKED(s, idx[WP(rout)] = produced);
#endif
		/* the wake check in the same visit as the publish */
#ifdef ONEWAY
		/* wakeOneWayReader: a .spin writer never wakes */
		if
		:: strat != SPIN ->
			tmp = idx[WC(rout)];     /* consumerHadCaughtUp: SC load */
			if
			:: tmp >= pblf -> atomic { if :: asleep[peer] == WP(rout) -> asleep[peer] = 0 :: else fi }
			:: else
			fi
		:: else
		fi;
#else
		if
		:: (waiting[peer] & 1) != 0 ->
			atomic { if :: asleep[peer] == WP(rout) -> asleep[peer] = 0 :: else fi }
		:: else
		fi;
#endif
		if
		:: isClose -> goto closeSent
		:: else -> goto next
		fi
	:: else ->
		fs = true; allow = false; ret = RA_SEND; goto waitForPeer
	fi;
afterSendWait:
	if
	:: err != 0 ->
		/* the send throws peerClosed: the peer must have stopped reading */
		assert(stoppedG[peer]);
		if
		:: isClose -> result[s] = R_PEERCLOSED; goto finish
		:: else -> goto finish
		fi
	:: else -> goto send
	fi;

/* ---- close(): stoppedReading, then closeSending */
close:
	if
	:: READER(s) -> receiveClosed = true; result[s] = R_OK; goto next
	:: else
	fi;
	receiveClosed = true;
	LOCKED(s, closed[s] = closed[s] | STOPPED_READING; stoppedG[s] = true);
#ifdef CLOSE_WAKES
	/* proposed: wake a peer that sleeps waiting for room */
	if
	:: (waiting[peer] & 2) != 0 ->
		atomic { if :: asleep[peer] == WC(rin) -> asleep[peer] = 0 :: else fi }
	:: else
	fi;
#endif
	goto closeSending;

/* ---- closeSending(): close frame, sendingClosed, wake, flush */
closeSending:
	if
	:: sendClosed -> result[s] = R_OK; goto next
	:: else
	fi;
	closeFrameAt = produced;
	isClose = true;
	goto send;
closeSent:
	sendClosed = true;
	LOCKED(s, closed[s] = closed[s] | SENDING_CLOSED);
	/* wakePeerIfWaiting(dataWaiting: true) */
#ifdef ONEWAY
	if
	:: strat != SPIN ->
		tmp = idx[WC(rout)];
		if
		:: tmp >= pblf -> atomic { if :: asleep[peer] == WP(rout) -> asleep[peer] = 0 :: else fi }
		:: else
		fi
	:: else
	fi;
#else
	if
	:: (waiting[peer] & 1) != 0 ->
		atomic { if :: asleep[peer] == WP(rout) -> asleep[peer] = 0 :: else fi }
	:: else
	fi;
#endif
flush:
	/* producer.consumed(through: closeFrameAt): refresh, compare */
	tmp = idx[WC(rout)];
	assert(tmp >= cachedConsumed && tmp <= produced);
	cachedConsumed = tmp;
	if
	:: cachedConsumed >= closeFrameAt ->
		assert(consumedG[rout] >= closeFrameAt);
		result[s] = R_OK; goto next
	:: else
	fi;
	fs = true; allow = true; ret = RA_FLUSH; goto waitForPeer;
afterFlushWait:
	if
	:: err != 0 ->
		/* peerClosed: a failure only if messages were left unread */
		tmp = idx[WC(rout)];
		cachedConsumed = tmp;
		if
		:: cachedConsumed >= closeFrameAt -> result[s] = R_OK; goto next
		:: else ->
			/* no false alarm: the peer really left a message unread, for good */
			assert(stoppedG[peer] && consumedG[rout] < closeFrameAt);
			result[s] = R_PEERCLOSED; goto next
		fi
	:: else -> goto flush
	fi;

/* ---- receive: receiveFrameNow, else waitForPeer(data) and retry */
receive:
	assert(READS(s) && !receiveClosed);
	if
	:: consumed != cachedProduced -> skip
	:: else ->
		tmp = idx[WP(rin)];        /* refreshProduced: acquire */
		assert(tmp >= cachedProduced && tmp - consumed <= SIZE);
		cachedProduced = tmp
	fi;
	if
	:: consumed == cachedProduced ->
		if
		:: peerClosed -> goto gotClose
		:: else -> fs = false; allow = false; ret = RA_RECV; goto waitForPeer
		fi
	:: else ->
		frame = (closeAt[rin] == consumed -> 2 : 1);
		consumed++;
		consumedG[rin] = consumed;
#ifdef RELEASE_CONSUMER
		buffered_store(s, WC(rin), consumed);
#else
		LOCKED(s, idx[WC(rin)] = consumed);
#endif
		/* the wake check in the same visit as the release */
		if
		:: (waiting[peer] & 2) != 0 ->
			atomic { if :: asleep[peer] == WC(rin) -> asleep[peer] = 0 :: else fi }
		:: else
		fi;
		if
		:: frame == 2 -> peerClosed = true; goto gotClose
		:: else ->
			recvData[s]++;
			assert(recvData[s] <= sentData[peer]);
			if
			:: op == OP_RECVALL -> goto receive
			:: op == OP_ECHO -> isClose = false; pc--; goto send   /* answer, then receive again */
			:: else -> goto next
			fi
		fi
	fi;
afterRecvWait:
	if
	:: err != 0 -> goto gotClose
	:: else -> goto receive
	fi;
gotClose:
	/* peerClosed: every message sent before the close was delivered */
	assert(peerClosed);
	assert(recvData[s] == sentData[peer]);
	assert(closeAt[rin] != NONE && consumed >= closeAt[rin]);
	if
	:: op == OP_ECHO -> pc++   /* leave the echo loop: pc-- above kept it on this op */
	:: else
	fi;
	goto next;

/* ---- waitForPeer(forSpace: fs, allowPeerClosed: allow) */
waitForPeer:
	err = 0;
	spun = 0;
	/* waiting for room: the consumer index reserve saw (lastSeenConsumedWord) */
#ifdef OLD_SPACE_OBSERVED
	/* before da01c64: a fresh read of the word */
	if
	:: fs -> observed = idx[WC(rout)]
	:: else
	fi;
#else
	if
	:: fs -> observed = cachedConsumed
	:: else
	fi;
#endif
wloop:
	/* checkPeerAlive */
	if
	:: fs ->
		if
		:: (closed[peer] & STOPPED_READING) != 0 -> err = 1; goto wdone
		:: else
		fi
	:: !fs && !allow ->
		if
		:: (closed[peer] & SENDING_CLOSED) != 0 ->
			if
			:: consumed != cachedProduced -> skip
			:: else ->
				tmp = idx[WP(rin)];
				cachedProduced = tmp
			fi;
			if
			:: consumed == cachedProduced ->
				/* the close frame must have been read already */
				peerClosed = true; err = 1; goto wdone
			:: else
			fi
		:: else
		fi
	:: else
	fi;
#ifndef LATE_OBSERVED
	/* data: the wake word as read before the poll */
	if
	:: !fs -> observed = idx[WP(rin)]
	:: else
	fi;
#endif
	/* poll */
	if
	:: fs ->
		tmp = idx[WC(rout)];
		assert(tmp >= cachedConsumed && tmp <= produced);
		cachedConsumed = tmp;
		prog = (tmp != observed)
	:: else ->
		if
		:: consumed != cachedProduced -> prog = true
		:: else ->
			tmp = idx[WP(rin)];
			cachedProduced = tmp;
			prog = (consumed != cachedProduced)
		fi
	fi;
	if
	:: prog -> goto wdone
	:: else
	fi;
#ifdef LATE_OBSERVED
	/* mutation: the wake word read after the poll that found the ring empty */
	if
	:: !fs -> observed = idx[WP(rin)]
	:: else
	fi;
#endif
	/* strategy: spin, adaptive (a few polls, then sleeps), block */
	if
	:: strat == SPIN -> goto wloop
	:: strat == ADAPTIVE && spun < SPINS -> spun++; goto wloop
	:: strat != SPIN -> skip
	fi;
	/* sleep(on: word, observed:, forSpace:) */
	word = (fs -> WC(rout) : WP(rin));
	wbit = (fs -> 2 : 1);
	if
#ifndef NO_ANNOUNCE
	:: !READER(s) -> LOCKED(s, waiting[s] = waiting[s] | wbit)
#else
	:: !READER(s) -> skip    /* mutation: sleep without setting the waiting bit */
#endif
	:: else        /* sleepWithoutAnnouncing */
	fi;
#ifdef CLOSE_WAKES
	/* proposed: re-check the peer's stoppedReading after announcing */
	if
	:: fs && (closed[peer] & STOPPED_READING) != 0 -> goto unannounce
	:: else
	fi;
#endif
	/* sleepUnlessChanged: SC load, then futex wait */
	tmp = idx[word];
	if
	:: tmp == observed ->
		atomic {
			if
			:: idx[word] == observed -> asleep[s] = word; expected[s] = observed
			:: else
			fi
		};
		if
		:: asleep[s] == 0 -> expected[s] = 0                     /* woken */
#ifdef TIMEOUT
		:: atomic { asleep[s] != 0 -> asleep[s] = 0; expected[s] = 0 }  /* 10 ms passed, or EINTR */
#endif
		fi
	:: else
	fi;
unannounce:
	if
	:: !READER(s) -> LOCKED(s, waiting[s] = waiting[s] & (3 - wbit))
	:: else
	fi;
	goto wloop;
wdone:
	if
	:: ret == RA_SEND -> goto afterSendWait
	:: ret == RA_FLUSH -> goto afterFlushWait
	:: ret == RA_RECV -> goto afterRecvWait
	fi;

finish:
	done[s] = true
}

/* The ring never holds more than its size; the consumer never passes the producer. */
active proctype Invariant() {
end:	atomic { !(RING_OK(0) && RING_OK(1)) -> assert(false) }
}

inline add(side, o) {
	script[side * MAXOPS + nops[side]] = o;
	nops[side]++
}

init {
	byte i;
	atomic {
#if SCRIPT == STREAM
		for (i : 1 .. NMSG) { add(0, OP_SEND) }
		add(0, OP_CLOSE);
		add(1, OP_RECVALL);
		add(1, OP_CLOSE);
#elif SCRIPT == HALF
		for (i : 1 .. NMSG) { add(0, OP_SEND) }
		add(0, OP_HCLOSE);
		add(0, OP_RECVALL);
		add(0, OP_CLOSE);
		add(1, OP_RECVALL);
		for (i : 1 .. NMSG) { add(1, OP_SEND) }
		add(1, OP_CLOSE);
#elif SCRIPT == PINGPONG
		for (i : 1 .. NMSG) { add(0, OP_SEND); add(0, OP_RECV) }
		add(0, OP_CLOSE);
		add(1, OP_ECHO);
		add(1, OP_CLOSE);
#elif SCRIPT == QUITTER
		for (i : 1 .. NMSG) { add(0, OP_SEND) }
		add(0, OP_CLOSE);
		add(1, OP_RECV);
		add(1, OP_CLOSE);
#elif SCRIPT == DUPLEX
		for (i : 1 .. NMSG) { add(0, OP_SEND); add(1, OP_SEND) }
		add(0, OP_CLOSE);
		add(1, OP_CLOSE);
#endif
#if defined(RELEASE_CONSUMER) || defined(RELEASE_PRODUCER)
		run Drain(0);
		run Drain(1);
#endif
		run Side(0);
		run Side(1)
	}
}

/* No lost wake-up: a side asleep on a word that changed since it looked
   (data was published, or room was made) is woken. Checked without
   -DTIMEOUT under weak fairness. */
#define CHANGED(s) (asleep[s] == 1 && idx[1] != expected[s] || asleep[s] == 2 && idx[2] != expected[s] || \
                    asleep[s] == 3 && idx[3] != expected[s] || asleep[s] == 4 && idx[4] != expected[s])
ltl woken { [] ((CHANGED(0) -> <> (asleep[0] == 0)) && (CHANGED(1) -> <> (asleep[1] == 0))) }

/* Termination (with -DTIMEOUT, checked under weak fairness): both sides
   finish their scripts. Without -DTIMEOUT the same is the absence of
   invalid end states in a safety run. */
ltl finishes { <> (done[0] && done[1]) }
