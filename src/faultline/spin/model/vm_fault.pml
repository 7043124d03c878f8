/*
 * vm_fault.pml: FreeBSD's page-fault protocol after D51474 ("vm_fault: try to only
 * share-busy page for soft faults"), in Promela, for SPIN.  Read it beside
 * sys/vm/vm_fault.c: the thread body below is vm_fault() with its labels, and every
 * block names the FreeBSD function it stands for.  faultline's Python model
 * (src/faultline/kern/) is the richer model of the same code; this one is an
 * independent, much smaller abstraction of its core protocol, used to cross-check
 * faultline's verdicts (docs/spin.md).
 *
 * What is modelled, for ONE page index (the address every scenario races on):
 *   - the busy word of each page (vm_page.h busy_lock): exclusive owner, shared
 *     count, VPB_BIT_WAITERS, VPB_FREED; vm_page_tryxbusy, vm_page_trysbusy,
 *     vm_page_xunbusy, vm_page_sunbusy, vm_page_busy_sleep (the check, the waiters
 *     bit and the drop of the object lock are one atomic step; the sleep ends at the
 *     wakeup(m) of an unbusy or a free);
 *   - two objects: S, the top object, shadowing O (vm_object.h backing_object), each
 *     with its rwlock, ref_count, shadow_count (derived from the backing links),
 *     OBJ_ONEMAPPING, OBJ_DEAD, OBJ_COLLAPSING, paging_in_progress and object busy;
 *   - per address space: one map entry (object, protection, NEEDS_COPY), the map's
 *     sx lock, and one PTE (page, writable): the pmap and the pv list in one place;
 *   - vm_fault(): vm_fault_lookup, vm_fault_soft_fast, vm_fault_object with the D51474
 *     shared-busy attempt, vm_fault_busy_sleep and the RetryFault restart,
 *     vm_fault_allocate, vm_fault_next with the xbusied placeholder first_m in the
 *     top object, vm_fault_zerofill, found:, vm_fault_cow (rename under both trylocks
 *     with the locked re-check, or copy with pmap_remove_all unless first_object is
 *     OBJ_ONEMAPPING), pmap_enter, vm_fault_deallocate;
 *   - vm_object_deallocate, with vm_object_deallocate_anon's full collapse
 *     (vm_object_collapse, vm_object_collapse_scan, vm_object_terminate) for the
 *     exit of cow-rename;
 *   - user loads and stores through the PTE, judged by a memory oracle.
 * Left out (docs/spin.md): other page indexes (prefault, which maps neighbours),
 * pager I/O (hard faults), shadow creation in vm_map_lookup, fork, munmap, mprotect,
 * wiring, bypass, swap, page queues, the pv-list and pmap locks.  Reaching any of those
 * is a "model_limit_" assertion: an error of the model, never a verdict.
 *
 * A scenario file includes vm_const.pml, defines NTHREADS, NCELLS, NEVENTS,
 * OBJ_ANON(o), OBJ_HAS_HANDLE(o), ENTRY_WRITABLE(a), ENTRY_NEEDS_COPY(a), CELL(a) and
 * next_op(), then includes this file, then writes init (the state after the
 * scenario's setup, and the threads).  The policy is chosen with -D: POLICY_XBUSY (before D51474)
 * or POLICY_SBUSY (D51474), and at most one MUTANT_* switch (faultline's seeded bugs,
 * src/faultline/kern/mutants.py) on top of POLICY_SBUSY.
 *
 * Every safety property is an assertion on a hidden flag named after it, so that pan
 * names the property it found violated: KASSERTs FreeBSD has (P1-P5, a38483fa2b3a,
 * D49758), faultline's structural invariants (O3, W, P3/P5 over the PTEs) and its
 * memory oracle.  A deadlock is pan's "invalid end state".
 */

#if NTHREADS > 3
#error "vm_fault.pml: WAKEUP and asleep[] have room for three threads"
#endif

/* where vm_fault_deallocate() and vm_object_deallocate() return to */
#define RET_DONE     0    /* the fault is complete: retry the access */
#define RET_RESTART  1    /* FAULT_RESTART: goto RetryFault */
#define RET_FAULT    0    /* vm_object_deallocate from vm_fault_deallocate */
#define RET_SLEPT    1    /* ... from vm_fault_busy_sleep */
#define RET_EXIT     2    /* ... from vmspace_exit */
#define RET_FAULT_EARLY 3 /* ... from vm_fault_deallocate, before the busies */

/* ---------------------------------------------------------------- state */

/* struct vm_object, for S and O (the modelled index only) */
byte obj_page[NOBJ] = NONE;     /* the radix tree at the index: a page frame, or NONE */
byte obj_wlock[NOBJ];           /* rwlock: the writer (thread id), 0 if none */
byte obj_rlocks[NOBJ];          /* rwlock: readers */
byte obj_ref[NOBJ];             /* ref_count (A) */
byte obj_backing[NOBJ] = NONE;  /* backing_object (O) */
bit  obj_onemapping[NOBJ];      /* OBJ_ONEMAPPING */
bit  obj_dead[NOBJ];            /* OBJ_DEAD */
bit  obj_collapsing[NOBJ];      /* OBJ_COLLAPSING */
bit  obj_terminated[NOBJ];      /* type == OBJT_DEAD */
byte obj_pip[NOBJ];             /* paging_in_progress blockcount */
byte obj_busy[NOBJ];            /* vm_object_busy blockcount (soft_fast) */

/* struct vm_page */
byte  pg_obj[NPAGES] = NONE;    /* object (O,B); NONE: free (VPB_FREED) */
bit   pg_valid[NPAGES];         /* valid == VM_PAGE_BITS_ALL (O,B) */
byte  pg_xown[NPAGES];          /* busy_lock: exclusive owner (thread id), 0 if none */
byte  pg_shr[NPAGES];           /* busy_lock: VPB_SHARERS */
bit   pg_waiters[NPAGES];       /* busy_lock: VPB_BIT_WAITERS */
short pg_val[NPAGES];           /* contents */

/* struct vm_map (one entry) and its pmap (one PTE), per address space */
byte map_wlock[NAS];            /* sx lock: the writer */
byte map_rlocks[NAS];           /* sx lock: readers */
byte entry_obj[NAS] = NONE;     /* the entry's object; NONE: no entry */
byte pte[NAS] = NONE;           /* the page mapped at the address */
bit  pte_rw[NAS];               /* PG_RW */

/* sleep queues: the page a thread sleeps on (vmpfw, vmocol), NONE if awake */
byte asleep[4] = NONE;

/* scenario events (wait/post) and the memory oracle's abstract cells */
bit   posted[NEVENTS];
short cell[NCELLS];

/* the properties, one flag each: pan prints "assertion violated !(name)" */
hidden byte P1_xunbusy_by_non_owner, P1_sunbusy_of_page_not_sbusied, P1_free_by_non_owner;
hidden byte P2_identity_change_of_page_not_xbusied, P2_identity_change_without_object_wlock;
hidden byte P2_insert_at_resident_index;
hidden byte P3_pmap_enter_of_invalid_page;
hidden byte P4_writable_mapping_of_page_not_xbusied, P4_mapping_of_page_not_busied;
hidden byte P5_freeing_mapped_page;
hidden byte a38483fa2b3a_first_m_not_xbusy, cow_first_m_not_xbusied;
hidden byte D49758_cow_copy_valid_before_relookup, found_page_not_busied;
hidden byte found_page_not_valid, vm_fault_next_without_first_m;
hidden byte terminate_of_busy_page, collapse_backing_not_empty, collapse_backing_referenced;
hidden byte user_access_to_freed_page;
hidden byte O3_shadowed_page_stays_mapped, W_writable_pte_outside_top_object;
hidden byte P3_P5_pte_maps_invalid_or_freed_page, pte_without_map_entry;
hidden byte memory_read_returns_stale_value;
hidden byte model_limit_fault_without_map_entry, model_limit_shadow_creation;
hidden byte model_limit_protection_failure, model_limit_pager_io;
hidden byte model_limit_out_of_page_frames, model_limit_invalid_page_below_top;
hidden byte model_limit_terminate_on_last_reference, model_limit_concurrent_collapse;
hidden byte model_limit_bypass, model_limit_dead_object_type;

#define KASSERT(c, name)  if :: !(c) -> name = 1; assert(!name) :: else -> skip fi
#define MODEL_LIMIT(c, name)  KASSERT(c, name)

/* Coverage probes (faultline's scenario probes): with -DPROBES, reaching a path is an
 * "assertion violated !(probe_NAME)"; pan -c0 lists every path a run can reach. */
#ifdef PROBES
hidden byte probe_soft_fast, probe_sbusy_soft, probe_xbusy_soft, probe_busy_sleep;
hidden byte probe_cow_copy, probe_cow_copy_sbusied_src, probe_cow_rename, probe_remove_all;
hidden byte probe_zerofill, probe_collapse, probe_collapse_rename;
hidden byte probe_collapse_free_shadowed, probe_collapse_wait_busy;
#define PROBE(name)  probe_##name = 1; assert(!probe_##name)
#else
#define PROBE(name)  skip
#endif

#define BUSIED(p)        (pg_xown[p] != 0 || pg_shr[p] > 0)
/* shadow_count: kept for anonymous backing objects only (vm_object_backing_insert) */
#define SHADOW_COUNT(o)  (OBJ_ANON(o) -> (obj_backing[S] == (o)) + (obj_backing[O] == (o)) : 0)
#define NEEDS_GETPAGES(o) (!OBJ_ANON(o))    /* vm_fault_object_needs_getpages: no swap */
#define IS_READ          (!prot_w && !fwrite)   /* vm_fault_is_read */
#define MIGHT_BE_COW     (obj != fo)             /* vm_fault_might_be_cow */
#define MAPPED(p)        (pte[0] == (p) || pte[1] == (p) || pte[2] == (p))

/* ---------------------------------------------------------------- policy switches */

#if !defined(POLICY_XBUSY) && !defined(POLICY_SBUSY)
#define POLICY_SBUSY
#endif

/* vm_fault_object's re-check with the sbusy held (Policy.vm_fault_object_sbusy_recheck) */
#ifdef MUTANT_SBUSY_WRITE
#define SBUSY_RECHECK   (pg_valid[m])
#else
#define SBUSY_RECHECK   (pg_valid[m] && (IS_READ || MIGHT_BE_COW))
#endif

/* vm_fault_cow: only an exclusively busied source may change identity */
#ifdef MUTANT_RENAME_SBUSIED
#define COW_MAY_RENAME  1
#else
#define COW_MAY_RENAME  (pg_xown[m] == me)
#endif

/* ---------------------------------------------------------------- locks */

inline WLOCK(o)  { atomic { obj_wlock[o] == 0 && obj_rlocks[o] == 0 -> obj_wlock[o] = me } }
inline RLOCK(o)  { atomic { obj_wlock[o] == 0 -> obj_rlocks[o]++ } }
inline TRYWLOCK(o, r) {
	atomic {
		if
		:: obj_wlock[o] == 0 && obj_rlocks[o] == 0 -> obj_wlock[o] = me; r = 1
		:: else -> r = 0
		fi
	}
}
/* rw_try_upgrade: the caller holds a read lock */
inline TRYUPGRADE(o, r) {
	atomic {
		if
		:: obj_rlocks[o] == 1 -> obj_rlocks[o] = 0; obj_wlock[o] = me; r = 1
		:: else -> r = 0
		fi
	}
}
inline UNLOCK(o) {
	atomic {
		if
		:: obj_wlock[o] == me -> obj_wlock[o] = 0
		:: else -> assert(obj_rlocks[o] > 0); obj_rlocks[o]--
		fi
	}
}

inline MAP_RLOCK()   { atomic { map_wlock[as] == 0 -> map_rlocks[as]++ } }
inline MAP_RUNLOCK() { map_rlocks[as]-- }

/* vm_object_pip_wakeup: the sleepers wait for the count to drain (blockcount) */
inline PIP_WAKEUP(o) { obj_pip[o]-- }

/* ---------------------------------------------------------------- busy (vm_page.c) */

/* wakeup(m): every thread asleep on the page */
inline WAKEUP(p) {
	if :: asleep[1] == p -> asleep[1] = NONE :: else -> skip fi;
	if :: asleep[2] == p -> asleep[2] = NONE :: else -> skip fi;
	if :: asleep[3] == p -> asleep[3] = NONE :: else -> skip fi
}

/* vm_page_tryxbusy: fails if busied in any way, freed, or the object is busied */
inline TRYXBUSY(p, r) {
	atomic {
		if
		:: pg_obj[p] != NONE && !BUSIED(p) && obj_busy[pg_obj[p]] == 0 ->
			pg_xown[p] = me; r = 1
		:: else -> r = 0
		fi
	}
}

/* vm_page_trysbusy: fails if xbusied, freed, or the object is busied */
inline TRYSBUSY(p, r) {
	atomic {
		if
		:: pg_obj[p] != NONE && pg_xown[p] == 0 && obj_busy[pg_obj[p]] == 0 ->
			pg_shr[p]++; r = 1
		:: else -> r = 0
		fi
	}
}

/* vm_page_xunbusy (and _hard): the release wakes the waiters */
inline XUNBUSY(p) {
	atomic {
		KASSERT(pg_xown[p] == me, P1_xunbusy_by_non_owner);
		pg_xown[p] = 0;
		if
		:: pg_waiters[p] -> pg_waiters[p] = 0; WAKEUP(p)
		:: else -> skip
		fi
	}
}

/* vm_page_sunbusy: the last sharer wakes the waiters */
inline SUNBUSY(p) {
	atomic {
		KASSERT(pg_shr[p] > 0 && pg_xown[p] == 0, P1_sunbusy_of_page_not_sbusied);
		pg_shr[p]--;
		if
		:: pg_shr[p] == 0 && pg_waiters[p] -> pg_waiters[p] = 0; WAKEUP(p)
		:: else -> skip
		fi
	}
}

/* vm_page_unbusy (vm_fault_page_release): x or s, whichever we hold */
inline UNBUSY(p) {
	atomic {
		if
		:: pg_xown[p] == me -> XUNBUSY(p)
		:: else -> SUNBUSY(p)
		fi
	}
}

/* _vm_page_busy_sleep: flag VPB_BIT_WAITERS in the step that decides to sleep, so that
 * the releaser wakes us (Policy.vm_page_busy_sleep_set_waiters) */
#ifdef MUTANT_LOST_WAKEUP
#define SET_WAITERS(p)  skip
#else
#define SET_WAITERS(p)  pg_waiters[p] = 1
#endif

/*
 * vm_page_busy_sleep(p, wmesg, sflag): object o locked on entry.  slept: the lock was
 * dropped and the thread slept (the caller restarts); else the lock is still held.
 * With VM_ALLOC_SBUSY (sflag) only an exclusive busy is waited for.
 */
inline BUSY_SLEEP(p, o, sflag) {
	atomic {
		if
		:: obj_busy[o] > 0 ->
			/* vm_object_busy_wait: soft_fast is mapping a page of o */
			UNLOCK(o); slept = 1; busywait = 1
		:: else ->
			busywait = 0;
			if
			:: !BUSIED(p) || (sflag && pg_xown[p] == 0) || pg_obj[p] != o ->
				slept = 0
			:: else ->
				SET_WAITERS(p); asleep[me] = p; UNLOCK(o); slept = 1
			fi
		fi
	}
	if
	:: slept && busywait -> (obj_busy[o] == 0)
	:: slept && !busywait -> (asleep[me] == NONE)
	:: else -> skip
	fi
}

/* vm_page_alloc: a new page at the index of o, xbusied, invalid (o write-locked) */
inline VM_PAGE_ALLOC(o) {
	atomic {
		KASSERT(obj_page[o] == NONE, P2_insert_at_resident_index);
		if
		:: pg_obj[0] == NONE -> m = 0
		:: else ->
			if
			:: pg_obj[1] == NONE -> m = 1
			:: else ->
				if
				:: pg_obj[2] == NONE -> m = 2
				:: else -> m = NONE
				fi
			fi
		fi;
		MODEL_LIMIT(m != NONE, model_limit_out_of_page_frames);
		pg_obj[m] = o; obj_page[o] = m; pg_valid[m] = 0; pg_xown[m] = me;
		pg_shr[m] = 0; pg_waiters[m] = 0; pg_val[m] = 0
	}
}

/* vm_page_free (vm_page_free_toq, vm_page_busy_free): xbusied by us, object
 * write-locked; "freeing mapped page"; the busy word becomes FREED, sleepers wake */
inline VM_PAGE_FREE(p) {
	atomic {
		KASSERT(!MAPPED(p), P5_freeing_mapped_page);
		KASSERT(pg_xown[p] == me, P1_free_by_non_owner);
		KASSERT(obj_wlock[pg_obj[p]] == me, P2_identity_change_without_object_wlock);
		obj_page[pg_obj[p]] = NONE; pg_obj[p] = NONE; pg_valid[p] = 0;
		pg_xown[p] = 0; pg_val[p] = 0;
		if
		:: pg_waiters[p] -> pg_waiters[p] = 0; WAKEUP(p)
		:: else -> skip
		fi
	}
}

/* ---------------------------------------------------------------- pmap */

/* pmap_enter: P3 and P4 (amd64 pmap.c, vm_page_aflag_set(PGA_WRITEABLE)) */
inline PMAP_ENTER(p, rw, objbusied) {
	atomic {
		KASSERT(pg_valid[p], P3_pmap_enter_of_invalid_page);
		KASSERT(!rw || pg_xown[p] == me || objbusied, P4_writable_mapping_of_page_not_xbusied);
		KASSERT(BUSIED(p) || objbusied, P4_mapping_of_page_not_busied);
		pte[as] = p; pte_rw[as] = rw
	}
}

/* pmap_remove_all: every mapping of the page, in every pmap */
inline PMAP_REMOVE_ALL(p) {
	atomic {
		if :: pte[0] == p -> pte[0] = NONE; pte_rw[0] = 0 :: else -> skip fi;
		if :: pte[1] == p -> pte[1] = NONE; pte_rw[1] = 0 :: else -> skip fi;
		if :: pte[2] == p -> pte[2] = NONE; pte_rw[2] = 0 :: else -> skip fi
	}
}

/* ---------------------------------------------------------------- policy questions */

/* vm_fault_can_cow_rename(fs), on fs->object: handle and OBJ_ANON never change; the
 * counts are read racily (vm_fault_cow re-checks under both write locks) */
inline CAN_COW_RENAME() {
	cr = !OBJ_HAS_HANDLE(obj) && OBJ_ANON(obj);
	if :: cr -> cr = (SHADOW_COUNT(obj) == 1) :: else -> skip fi;
	if :: cr -> cr = (obj_ref[obj] == 1) :: else -> skip fi
}

/* Policy.vm_fault_object_may_sbusy: the D51474 condition of vm_fault_object(),
 * clause by clause, with the racy reads as their own steps */
inline MAY_SBUSY() {
#ifdef POLICY_XBUSY
	ok = 0
#else
	/* vm_page_all_valid(fs->m): racy, invalid -> valid needs only the busy */
	ok = pg_valid[m];
#ifndef MUTANT_SBUSY_WRITE
	/* vm_fault_is_read(fs) || vm_fault_might_be_cow(fs): the fault's own state */
	ok = ok && (IS_READ || MIGHT_BE_COW);
#endif
#ifndef MUTANT_SBUSY_RENAMABLE
	/* !vm_fault_can_cow_rename(fs) || fs->object != fs->first_object->backing_object */
	if
	:: ok ->
		CAN_COW_RENAME();
		if
		:: cr -> ok = (obj != obj_backing[fo])     /* racy, unlocked first_object */
		:: else -> skip
		fi
	:: else -> skip
	fi
#endif
#endif
}

/* vm_fault_cow: vm_fault_can_cow_rename re-checked under both write locks */
inline RENAME_RECHECK() {
#ifdef MUTANT_RENAME_NO_RECHECK
	rename = 1
#else
	CAN_COW_RENAME(); rename = cr
#endif
}

/* vm_fault_cow, copy path: pmap_remove_all(fs->m) unless first_object is
 * OBJ_ONEMAPPING (a racy read) */
inline MUST_REMOVE_ALL() {
#ifdef MUTANT_NO_SHOOTDOWN
	ok = 0
#else
	ok = !obj_onemapping[fo]
#endif
}

/* vm_fault_cow, copy path: the source stays busied in fs->m_cow until the end
 * (Policy.vm_fault_cow_keep_source); fs->m_cow also tells found: to validate the copy */
inline KEEP_SOURCE(p) {
#ifdef MUTANT_EARLY_UNBUSY_M_COW
	UNBUSY(p);
#endif
	m_cow = p
}

/* vm_fault_deallocate: drop the COW source's busy (Policy.vm_fault_release_m_cow) */
inline RELEASE_M_COW() {
	if
	:: m_cow != NONE ->
#ifndef MUTANT_EARLY_UNBUSY_M_COW
		UNBUSY(m_cow);
#endif
		m_cow = NONE
	:: else -> skip
	fi
}

/* vm_fault_soft_fast: where the unlocked lookup looks: first_object only */
inline SOFT_FAST_WHERE() {
#ifdef MUTANT_SOFT_FAST_BELOW_TOP
	sfo = ((obj_page[fo] == NONE && obj_backing[fo] != NONE) -> obj_backing[fo] : fo)
#else
	sfo = fo
#endif
}

/* found:, just before pmap_enter: first_m is kept until vm_fault_deallocate */
inline FOUND_BEFORE_ENTER() {
#ifdef MUTANT_FIRST_M_EARLY_RELEASE
	if
	:: first_m != NONE && first_m != m ->
		WLOCK(fo); VM_PAGE_FREE(first_m); first_m = NONE; UNLOCK(fo)
	:: else -> skip
	fi
#else
	skip
#endif
}

/* a38483fa2b3a: below the top object, first_m is xbusied for the whole fault (the
 * seeded bug that removes that protection drops the assertion restating it) */
inline ASSERT_FIRST_M() {
#ifndef MUTANT_FIRST_M_EARLY_RELEASE
	KASSERT(!MIGHT_BE_COW || (first_m != NONE && pg_xown[first_m] == me),
	    a38483fa2b3a_first_m_not_xbusy)
#else
	skip
#endif
}

/* ---------------------------------------------------------------- collapse (vm_object.c) */

/* vm_object_collapse_scan_wait: both objects locked on entry and on return */
inline COLLAPSE_SCAN_WAIT(p) {
	if
	:: pg_obj[p] == sh ->
		UNLOCK(bk);
		BUSY_SLEEP(p, sh, 0);
		if :: slept -> WLOCK(sh) :: else -> skip fi
	:: else ->
		UNLOCK(sh);
		BUSY_SLEEP(p, bk, 0);
		if :: !slept -> UNLOCK(bk) :: else -> skip fi;
		WLOCK(sh)
	fi;
	WLOCK(bk)
}

/* vm_object_collapse(sh): sh write-locked (again on return).  Only the full
 * collapse (_collapse_full) is modelled: the backing object is referenced only
 * by sh; a bypass is a model limit. */
inline VM_OBJECT_COLLAPSE() {
	do
	:: /* vm_object_backing_collapse_wait() */
		bk = obj_backing[sh];
		if
		:: bk == NONE || !OBJ_ANON(bk) -> break
		:: else -> skip
		fi;
		WLOCK(bk);
		MODEL_LIMIT(!obj_dead[bk] && !obj_collapsing[bk], model_limit_concurrent_collapse);
		tmp = obj_ref[bk];                       /* racy */
		MODEL_LIMIT(tmp == 1, model_limit_bypass);
		/* _collapse_full: the backing object is referenced only by sh */
		obj_pip[sh]++; obj_collapsing[sh] = 1; obj_pip[bk]++; obj_dead[bk] = 1;
		PROBE(collapse);
		/* vm_object_collapse_scan(): move the backing page up unless sh's page
		 * shadows it; busy pages make it drop both locks, sleep and rescan */
		do
		:: p = obj_page[bk];
			if
			:: p == NONE -> break
			:: else -> skip
			fi;
			TRYXBUSY(p, ok);
			if
			:: !ok -> PROBE(collapse_wait_busy); COLLAPSE_SCAN_WAIT(p)
			:: ok && !pg_valid[p] -> VM_PAGE_FREE(p)
			:: ok && pg_valid[p] ->
				pp = obj_page[sh];
				if
				:: pp != NONE -> TRYXBUSY(pp, ok)
				:: else -> ok = 1
				fi;
				if
				:: !ok ->
#ifdef MUTANT_COLLAPSE_GUESSES_SHADOW
					/* seeded: the busy parent page is taken as shadowing p */
					VM_PAGE_FREE(p); PROBE(collapse_free_shadowed)
#else
					XUNBUSY(p); PROBE(collapse_wait_busy); COLLAPSE_SCAN_WAIT(pp)
#endif
				:: else ->
					if
					:: pp != NONE && !pg_valid[pp] ->
						VM_PAGE_FREE(pp); pp = NONE     /* left by an incomplete fault */
					:: else -> skip
					fi;
					if
					:: pp != NONE ->
						/* shadowed: "freeing mapped page" */
						VM_PAGE_FREE(p); XUNBUSY(pp);
						PROBE(collapse_free_shadowed)
					:: else ->
						/* vm_page_rename: the page's mappings stay valid */
						atomic {
							KASSERT(pg_xown[p] == me, P2_identity_change_of_page_not_xbusied);
							KASSERT(obj_page[sh] == NONE, P2_insert_at_resident_index);
							obj_page[bk] = NONE; obj_page[sh] = p; pg_obj[p] = sh
						}
						XUNBUSY(p);
						PROBE(collapse_rename)
					fi
				fi
			fi
		od;
		obj_collapsing[sh] = 0;
		/* vm_object_backing_transfer() */
		obj_backing[sh] = obj_backing[bk];
		UNLOCK(sh); PIP_WAKEUP(sh);
		KASSERT(obj_page[bk] == NONE, collapse_backing_not_empty);
		KASSERT(obj_ref[bk] == 1, collapse_backing_referenced);
		PIP_WAKEUP(bk);
		obj_ref[bk]--;
		/* vm_object_terminate(): vm_object_pip_wait ("objtrm"), free the pages */
		do
		:: obj_pip[bk] > 0 -> UNLOCK(bk); (obj_pip[bk] == 0); WLOCK(bk)
		:: else -> break
		od;
		KASSERT(obj_page[bk] == NONE || !BUSIED(obj_page[bk]), terminate_of_busy_page);
		obj_terminated[bk] = 1;
		UNLOCK(bk);
		WLOCK(sh)
	od;
}

/* ---------------------------------------------------------------- invariants */

#define VALIDPG(o)  (obj_page[o] != NONE && pg_valid[obj_page[o]])
/* the topmost valid page of the chain from o (two objects at most) */
#define TOPPG(o)    (VALIDPG(o) -> obj_page[o] : \
                     ((obj_backing[o] != NONE && VALIDPG(obj_backing[o])) -> \
                      obj_page[obj_backing[o]] : NONE))
/* O3: every PTE maps the topmost valid page of its entry's chain, unless that page is
 * busied (a fault or a collapse owns the change) */
#define O3_OK(a)    (pte[a] == NONE || entry_obj[a] == NONE || pte[a] == TOPPG(entry_obj[a]) \
                     || (TOPPG(entry_obj[a]) != NONE && BUSIED(TOPPG(entry_obj[a]))))
/* P3, P5: a PTE maps a valid page that is not freed */
#define P35_OK(a)   (pte[a] == NONE || (pg_obj[pte[a]] != NONE && pg_valid[pte[a]]))
/* W: a writable PTE maps a page of its entry's top object through a writable entry
 * without NEEDS_COPY (not judged while the map is write-locked) */
#define W_OK(a)     (pte[a] == NONE || !pte_rw[a] || map_wlock[a] != 0 || \
                     (entry_obj[a] != NONE && pg_obj[pte[a]] == entry_obj[a] && \
                      ENTRY_WRITABLE(a) && !ENTRY_NEEDS_COPY(a)))
/* every PTE lies inside a map entry (not judged while the map is write-locked) */
#define E_OK(a)     (pte[a] == NONE || entry_obj[a] != NONE || map_wlock[a] != 0)

proctype invariants()
{
end_invariants:
	if
	:: atomic { !(P35_OK(0) && P35_OK(1) && P35_OK(2)) ->
		P3_P5_pte_maps_invalid_or_freed_page = 1;
		assert(!P3_P5_pte_maps_invalid_or_freed_page) }
	:: atomic { !(E_OK(0) && E_OK(1) && E_OK(2)) ->
		pte_without_map_entry = 1; assert(!pte_without_map_entry) }
	:: atomic { (P35_OK(0) && P35_OK(1) && P35_OK(2)) && !(O3_OK(0) && O3_OK(1) && O3_OK(2)) ->
		O3_shadowed_page_stays_mapped = 1; assert(!O3_shadowed_page_stays_mapped) }
	:: atomic { (P35_OK(0) && P35_OK(1) && P35_OK(2)) && !(W_OK(0) && W_OK(1) && W_OK(2)) ->
		W_writable_pte_outside_top_object = 1; assert(!W_writable_pte_outside_top_object) }
	fi
}

/* ---------------------------------------------------------------- a thread */

/*
 * A scenario thread in address space `as`: its ops (next_op) in order.  A load or a
 * store goes through the PTE when it allows it (one step, judged by the memory
 * oracle), and otherwise faults (vm_fault) and tries again.
 */
proctype Thread(byte me; byte as)
{
	byte pc, kind;
	short val;
	/* struct faultstate (sys/vm/vm_fault.c) */
	byte fo = NONE;          /* first_object (first_pindex: the one index) */
	byte obj = NONE;         /* object */
	byte m = NONE;           /* m */
	byte first_m = NONE;     /* first_m: the top object's page (placeholder or copy) */
	byte m_cow = NONE;       /* m_cow: the COW source, busied until the end */
	bit fwrite;              /* fault_type & VM_PROT_WRITE */
	bit prot_w;              /* prot & VM_PROT_WRITE */
	bit can_read_lock;
	/* locals of the helpers */
	byte sfo, dobj, dret, oret, tmp, sh, bk, p, pp;
	bit ok, cr, rename, locked_first, slept, busywait, sflag, done;

NextOp:
	next_op();
	if
	:: kind == OP_END -> goto ThreadEnd
	:: kind == OP_WAIT -> (posted[val]); goto OpDone
	:: kind == OP_POST -> posted[val] = 1; goto OpDone
	:: kind == OP_EXIT -> goto Exit
	:: kind == OP_READ || kind == OP_WRITE -> fwrite = (kind == OP_WRITE)
	fi;

Access:
	/* trap(): the MMU walks the PTE and loads or stores, or faults */
	atomic {
		tmp = pte[as];
		if
		:: tmp != NONE && (!fwrite || pte_rw[as]) ->
			KASSERT(pg_obj[tmp] != NONE, user_access_to_freed_page);
			if
			:: fwrite -> pg_val[tmp] = val; cell[CELL(as)] = val
			:: else -> KASSERT(pg_val[tmp] == cell[CELL(as)], memory_read_returns_stale_value)
			fi;
			done = 1
		:: else -> done = 0
		fi
	}
	if
	:: done -> goto OpDone
	:: else -> can_read_lock = 1
	fi;

	/* ------------------------------------------------ vm_fault() */
RetryFault:
	/* vm_fault_lookup(): vm_map_lookup() under the map read lock */
	MAP_RLOCK();
	atomic {
		fo = entry_obj[as];
		MODEL_LIMIT(fo != NONE, model_limit_fault_without_map_entry);
		MODEL_LIMIT(!fwrite || !ENTRY_NEEDS_COPY(as), model_limit_shadow_creation);
		MODEL_LIMIT(!fwrite || ENTRY_WRITABLE(as), model_limit_protection_failure);
		/* a read through a NEEDS_COPY entry strips VM_PROT_WRITE */
		prot_w = ENTRY_WRITABLE(as) && !ENTRY_NEEDS_COPY(as)
	}

SoftFast:
	/* vm_fault_soft_fast(): the unlocked lookup and the racy validity/busy test, in
	 * first_object only (Policy.vm_fault_soft_fast_where) */
	atomic {
		SOFT_FAST_WHERE();
		m = obj_page[sfo];
		if
		:: m != NONE && (!pg_valid[m] || (prot_w && BUSIED(m))) -> m = NONE
		:: else -> skip
		fi
	}
	if
	:: m == NONE -> WLOCK(fo); goto SlowPath
	:: else -> skip
	fi;
	RLOCK(fo);
	if
	:: pg_obj[m] != sfo -> goto SoftFastFail
	:: else -> skip
	fi;
	obj_busy[fo]++;                          /* vm_object_busy */
	ok = pg_valid[m] && (!prot_w || !BUSIED(m));
	if
	:: !ok -> obj_busy[fo]--; goto SoftFastFail
	:: else -> skip
	fi;
	PMAP_ENTER(m, prot_w, 1);
	PROBE(soft_fast);
	UNLOCK(fo);
	obj_busy[fo]--;                          /* vm_object_unbusy */
	MAP_RUNLOCK();                           /* vm_fault_unlock_map */
	m = NONE;
	goto Access;
SoftFastFail:
	/* fail: upgrade the read lock, or drop it and take the write lock */
	TRYUPGRADE(fo, ok);
	if
	:: !ok -> UNLOCK(fo); WLOCK(fo)
	:: else -> skip
	fi;
SlowPath:
	obj_ref[fo]++;                           /* vm_object_reference_locked */
	obj_pip[fo]++;                           /* vm_object_pip_add */
	obj = fo; m = NONE; first_m = NONE; m_cow = NONE;

Walk:
	/* vm_fault_object(): fs.object locked, pips held; below the top object first_m
	 * is an xbusied invalid placeholder */
	if
	:: obj_dead[obj] ->
		/* dead object: unlock_and_deallocate, pause "vmf_de", restart */
		MODEL_LIMIT(!obj_terminated[obj], model_limit_dead_object_type);
		UNLOCK(obj); dret = RET_RESTART; goto Deallocate
	:: else -> skip
	fi;
	m = obj_page[obj];
	if
	:: m != NONE ->
		MAY_SBUSY();
		if
		:: ok ->
			TRYSBUSY(m, ok);
			if
			:: !ok -> sflag = 1; goto BusySleep
			:: else -> skip
			fi;
			/* Now make sure that racily checked conditions are still valid. */
			if
			:: SBUSY_RECHECK -> UNLOCK(obj); PROBE(sbusy_soft); goto Found  /* sbusied */
			:: else -> SUNBUSY(m)
			fi
		:: else -> skip
		fi;
		TRYXBUSY(m, ok);
		if
		:: !ok -> sflag = 0; goto BusySleep
		:: else -> skip
		fi;
		if
		:: pg_valid[m] -> UNLOCK(obj); PROBE(xbusy_soft); goto Found     /* xbusied */
		:: else -> skip
		fi
	:: else -> skip
	fi;
	if
	:: m == NONE && (NEEDS_GETPAGES(obj) || obj == fo) ->
		/* vm_fault_object_ensure_wlocked() */
		if
		:: obj_wlock[obj] == me -> ok = 1
		:: else -> TRYUPGRADE(obj, ok)
		fi;
		if
		:: !ok -> can_read_lock = 0; UNLOCK(obj); dret = RET_RESTART; goto Deallocate
		:: else -> skip
		fi;
		/* vm_fault_allocate() */
		VM_PAGE_ALLOC(obj)
	:: else -> skip
	fi;
	MODEL_LIMIT(!NEEDS_GETPAGES(obj), model_limit_pager_io);

Next:
	/* vm_fault_next(): keep the top object's page as the placeholder first_m and
	 * move hand over hand to the backing object */
	if
	:: obj == fo -> first_m = m; m = NONE
	:: else -> MODEL_LIMIT(m == NONE, model_limit_invalid_page_below_top)
	fi;
	tmp = obj_backing[obj];
	if
	:: tmp == NONE -> UNLOCK(obj); goto Zerofill                   /* FAULT_NEXT_NOOBJ */
	:: else -> skip
	fi;
	KASSERT(first_m != NONE, vm_fault_next_without_first_m);
	if
	:: can_read_lock -> RLOCK(tmp)
	:: else -> WLOCK(tmp)
	fi;
	obj_pip[tmp]++;
	if
	:: obj != fo -> PIP_WAKEUP(obj)
	:: else -> skip
	fi;
	UNLOCK(obj); obj = tmp;
	goto Walk;

BusySleep:
	/* vm_fault_busy_sleep(fs, sflag ? VM_ALLOC_SBUSY : 0): release first_m, the pips
	 * and the map, sleep on fs.m ("vmpfw"), drop the reference, restart */
	p = m; m = NONE;
	if
	:: MIGHT_BE_COW -> UNBUSY(first_m); first_m = NONE; PIP_WAKEUP(fo)
	:: else -> skip
	fi;
	PIP_WAKEUP(obj);
	MAP_RUNLOCK();
	BUSY_SLEEP(p, obj, sflag);
	if
	:: !slept -> UNLOCK(obj)
	:: else -> PROBE(busy_sleep)
	fi;
	dobj = fo; oret = RET_SLEPT; goto ObjDeallocate;

Zerofill:
	/* vm_fault_zerofill(): nothing below; first_m becomes a zero-filled valid page */
	if
	:: MIGHT_BE_COW -> PIP_WAKEUP(obj); obj = fo
	:: else -> skip
	fi;
	m = first_m; first_m = NONE;
	atomic { pg_val[m] = 0; pg_valid[m] = 1 }   /* pmap_zero_page, vm_page_valid */
	PROBE(zerofill);
	goto Found;

Found:
	/* found: fs.m busied (x, or s on the D51474 path), object unlocked */
	KASSERT(BUSIED(m), found_page_not_busied);
	if
	:: MIGHT_BE_COW && fwrite -> goto Cow
	:: MIGHT_BE_COW && !fwrite -> prot_w = 0     /* map the backing page read-only */
	:: else -> skip
	fi;
FoundMap:
	/* (no relookup: the model's faults never drop the map before found:) */
	if
	:: m_cow != NONE ->
		/* D49758: the copy is validated only now */
		atomic {
			KASSERT(!pg_valid[m], D49758_cow_copy_valid_before_relookup);
			pg_valid[m] = 1
		}
	:: else -> skip
	fi;
	KASSERT(pg_valid[m], found_page_not_valid);
	FOUND_BEFORE_ENTER();
	PMAP_ENTER(m, prot_w, 0);
	ASSERT_FIRST_M();
	UNBUSY(m);                                 /* xunbusy or sunbusy */
	if
	:: first_m == m -> first_m = NONE
	:: else -> skip
	fi;
	m = NONE;
	dret = RET_DONE; goto Deallocate;

Cow:
	/* vm_fault_cow(): rename fs.m into first_object if that is safe, else copy it
	 * into first_m.  No object locks on entry; the locks are only tried. */
	KASSERT(first_m != NONE && pg_xown[first_m] == me, cow_first_m_not_xbusied);
	locked_first = 0; rename = 0;
	CAN_COW_RENAME();
	if
	:: cr && COW_MAY_RENAME ->
		TRYWLOCK(fo, locked_first);
		if
		:: locked_first && obj == obj_backing[fo] ->
			TRYWLOCK(obj, ok);
			if
			:: ok ->
				RENAME_RECHECK();
				if
				:: !rename -> UNLOCK(obj)
				:: else -> skip
				fi
			:: else -> skip
			fi
		:: else -> skip
		fi
	:: else -> skip
	fi;
	if
	:: rename ->
		/* vm_page_remove_xbusy(m); vm_page_replace(m, first_object, first_m): the
		 * page moves up keeping its xbusy and its mappings; first_m is freed */
		atomic {
			KASSERT(pg_xown[m] == me, P2_identity_change_of_page_not_xbusied);
			KASSERT(obj_wlock[obj] == me && obj_wlock[fo] == me,
			    P2_identity_change_without_object_wlock);
			obj_page[obj] = NONE;
			VM_PAGE_FREE(first_m);
			obj_page[fo] = m; pg_obj[m] = fo
		}
		UNLOCK(obj); UNLOCK(fo);
		PROBE(cow_rename);
		first_m = m
	:: else ->
		if
		:: locked_first -> UNLOCK(fo)
		:: else -> skip
		fi;
		pg_val[first_m] = pg_val[m];             /* pmap_copy_page */
		PROBE(cow_copy);
		if
		:: pg_xown[m] != me -> PROBE(cow_copy_sbusied_src)
		:: else -> skip
		fi;
		tmp = m;
		MUST_REMOVE_ALL();
		if
		:: ok -> PMAP_REMOVE_ALL(tmp); PROBE(remove_all)
		:: else -> skip
		fi;
		KEEP_SOURCE(tmp)
	fi;
	PIP_WAKEUP(obj);
	obj = fo; m = first_m;
	goto FoundMap;

Deallocate:
	/* vm_fault_deallocate(): release m_cow, m, first_m, the pips, the reference,
	 * the map; no object locked on entry.  The reference goes after every busy: its
	 * deallocation may collapse, and a collapse sleeps on busy pages, ours too
	 * (Policy.vm_fault_deallocate_reference_first) */
#ifdef MUTANT_DEALLOCATE_BEFORE_UNBUSY
	dobj = fo; oret = RET_FAULT_EARLY; goto ObjDeallocate;
FaultDeallocatedEarly:
#endif
	RELEASE_M_COW();
	if
	:: m != NONE -> UNBUSY(m); m = NONE
	:: else -> skip
	fi;
	PIP_WAKEUP(obj);
	if
	:: MIGHT_BE_COW ->
		WLOCK(fo);
		if
		:: first_m != NONE -> VM_PAGE_FREE(first_m); first_m = NONE  /* vm_fault_page_free */
		:: else -> skip
		fi;
		UNLOCK(fo);
		PIP_WAKEUP(fo)
	:: else -> skip
	fi;
#ifdef MUTANT_DEALLOCATE_BEFORE_UNBUSY
	goto FaultDeallocated;
#else
	dobj = fo; oret = RET_FAULT; goto ObjDeallocate;
#endif
FaultDeallocated:
	MAP_RUNLOCK();                             /* vm_fault_unlock_map */
	if
	:: dret == RET_RESTART -> goto RetryFault
	:: else -> goto Access
	fi;

	/* ------------------------------------------------ exit1() */
Exit:
	/* vmspace_exit(): the map write-locked, pmap_remove, the entry unlinked; its
	 * object's reference dropped after the unlock (vm_map_process_deferred) */
	atomic { map_wlock[as] == 0 && map_rlocks[as] == 0 -> map_wlock[as] = me }
	atomic {
		pte[as] = NONE; pte_rw[as] = 0;
		dobj = entry_obj[as]; entry_obj[as] = NONE
	}
	map_wlock[as] = 0;
	oret = RET_EXIT; goto ObjDeallocate;

	/* ------------------------------------------------ vm_object_deallocate() */
ObjDeallocate:
	do
	:: dobj == NONE -> break
	:: else ->
		/* refcount_release_if_gt(&ref_count, OBJ_ANON ? 2 : 1) */
		atomic {
			if
			:: obj_ref[dobj] > (OBJ_ANON(dobj) -> 2 : 1) -> obj_ref[dobj]--; ok = 1
			:: else -> ok = 0
			fi
		}
		if
		:: ok -> dobj = NONE
		:: !ok && !OBJ_ANON(dobj) ->
			/* vm_object_deallocate_vnode: the vnode keeps its object */
			obj_ref[dobj]--; dobj = NONE
		:: else ->
			WLOCK(dobj);
			atomic {
				obj_ref[dobj]--;
				MODEL_LIMIT(obj_ref[dobj] > 0, model_limit_terminate_on_last_reference)
			}
			tmp = obj_ref[dobj];                 /* racy */
			if
			:: tmp > 1 || SHADOW_COUNT(dobj) == 0 ->
				if
				:: tmp == 1 -> obj_onemapping[dobj] = 1
				:: else -> skip
				fi;
				UNLOCK(dobj); dobj = NONE
			:: else ->
				/* vm_object_deallocate_anon(): lock the only shadow, take a
				 * reference on it, collapse it */
				sh = (obj_backing[S] == dobj -> S : O);
				TRYWLOCK(sh, ok);
				if
				:: !ok -> obj_pip[sh]++; UNLOCK(dobj); WLOCK(sh); PIP_WAKEUP(sh)
				:: else -> UNLOCK(dobj)
				fi;
				if
				:: obj_dead[sh] || obj_collapsing[sh] || obj_ref[sh] == 0 ->
					UNLOCK(sh); dobj = NONE
				:: else ->
					obj_ref[sh]++;
					if
					:: obj_backing[sh] != NONE && OBJ_ANON(obj_backing[sh]) ->
						VM_OBJECT_COLLAPSE()
					:: else -> skip
					fi;
					UNLOCK(sh); dobj = sh
				fi
			fi
		fi
	od;
	if
	:: oret == RET_FAULT -> goto FaultDeallocated
	:: oret == RET_SLEPT -> goto RetryFault
	:: oret == RET_EXIT -> goto OpDone
#ifdef MUTANT_DEALLOCATE_BEFORE_UNBUSY
	:: oret == RET_FAULT_EARLY -> goto FaultDeallocatedEarly
#endif
	fi;

OpDone:
	pc++;
	goto NextOp;
ThreadEnd:
	skip
}
