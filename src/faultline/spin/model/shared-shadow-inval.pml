/*
 * shared-shadow-inval (src/faultline/scenario/catalog/shared-shadow-inval.toml),
 * projected on page 0 and started when p2's fork of p3 returns: CVE-2021-29626
 * (tests/sys/vm/shared_shadow_inval_test.c).  p1's anonymous page B (100) lives in O;
 * p1 COPY-forked p2, so both entries are COW|NEEDS_COPY over O and map B read-only.
 * p2 set INHERIT_SHARE and forked p3: p2 and p3 now share one shadow S over O without
 * OBJ_ONEMAPPING, and pmap_copy gave p3 p2's read-only mapping of B.  P3 writes 300
 * (a COW copy of B into S, which must shoot down every mapping of B) and posts
 * p3done; P1 and P2 each read, wait for p3done and read again: p2 must then see 300,
 * p1 must not.
 *
 * O is referenced by p1's entry and S: never renamed from.
 */

#include "vm_const.pml"

#define NTHREADS  3
#define NCELLS    2
#define NEVENTS   1

#define OBJ_ANON(o)         1
#define OBJ_HAS_HANDLE(o)   0

#define P1  0
#define P2  1
#define P3  2
#define ENTRY_WRITABLE(a)    1
#define ENTRY_NEEDS_COPY(a)  ((a) == P1)
#define CELL(a)              ((a) != P1)   /* p1's copy; the cell p2 and p3 share */

#define T1  1          /* thread P1 */
#define T2  2          /* thread P2 */
#define T3  3          /* thread P3 */
#define P3DONE  0

inline next_op() {
	if
	:: (me == T1 || me == T2) && pc == 0 -> kind = OP_READ      /* read 0x1000 */
	:: (me == T1 || me == T2) && pc == 1 -> kind = OP_WAIT; val = P3DONE
	:: (me == T1 || me == T2) && pc == 2 -> kind = OP_READ      /* read 0x1000 */
	:: me == T3 && pc == 0 -> kind = OP_WRITE; val = 300        /* write 0x1000 300 */
	:: me == T3 && pc == 1 -> kind = OP_POST; val = P3DONE
	:: else -> kind = OP_END
	fi
}

#include "vm_fault.pml"

init {
	atomic {
		/* the state when fork p3 returns (vmspace_fork, INHERIT_SHARE of a
		 * NEEDS_COPY entry: vm_object_shadow(shared) and pmap_copy) */
		obj_backing[S] = O; obj_ref[S] = 2;   /* p2's and p3's entries */
		obj_ref[O] = 2;                       /* p1's entry and S */
		pg_obj[0] = O; obj_page[O] = 0; pg_valid[0] = 1; pg_val[0] = 100;  /* B */
		entry_obj[P1] = O; entry_obj[P2] = S; entry_obj[P3] = S;
		pte[P1] = 0; pte[P2] = 0; pte[P3] = 0;   /* read-only mappings of B */
		cell[0] = 100; cell[1] = 100;
		run invariants();
		run Thread(T1, P1);
		run Thread(T2, P2);
		run Thread(T3, P3)
	}
}
