/*
 * cow-rename (src/faultline/scenario/catalog/cow-rename.toml), projected on page 0:
 * an anonymous chain where the rename path runs.  p1's page B (5) lives in O; p1
 * forked p2 (both entries COW|NEEDS_COPY over O, both map B read-only), then p1's
 * setup write to page 3 made p1's shadow S over O.  In p1, W1 writes 11 to page 0 and
 * reads it, and W3 reads it; p2's only thread X reads it and exits.  Once X's exit
 * drops O to one reference and one shadow, W1's fault may move B into S
 * (vm_fault_cow's rename) instead of copying it, racing the collapse of S and O that
 * the exit starts (vm_object_deallocate_anon).  W2, and W1's and W3's ops on other
 * pages, touch no state of page 0 but the object locks and are left out.
 */

#include "vm_const.pml"

#define NTHREADS  3
#define NCELLS    2
#define NEVENTS   1

#define OBJ_ANON(o)         1
#define OBJ_HAS_HANDLE(o)   0

#define P1  0
#define P2  1
#define ENTRY_WRITABLE(a)    1
#define ENTRY_NEEDS_COPY(a)  ((a) == P2)
#define CELL(a)              (a)

#define W1  1
#define W3  2
#define X   3

inline next_op() {
	if
	:: me == W1 && pc == 0 -> kind = OP_WRITE; val = 11      /* write 0x1000 11 */
	:: me == W1 && pc == 1 -> kind = OP_READ                 /* read 0x1000 */
	:: me == W3 && pc == 0 -> kind = OP_READ                 /* read 0x1000 */
	:: me == X && pc == 0 -> kind = OP_READ                  /* read 0x1000 */
	:: me == X && pc == 1 -> kind = OP_EXIT                  /* exit */
	:: else -> kind = OP_END
	fi
}

#include "vm_fault.pml"

init {
	atomic {
		/* the state after setup */
		obj_backing[S] = O; obj_ref[S] = 1; obj_onemapping[S] = 1;
		obj_ref[O] = 2;                       /* p2's entry and S */
		pg_obj[0] = O; obj_page[O] = 0; pg_valid[0] = 1; pg_val[0] = 5;   /* B */
		entry_obj[P1] = S; entry_obj[P2] = O;
		pte[P1] = 0; pte[P2] = 0;             /* read-only since the fork */
		cell[0] = 5; cell[1] = 5;
		run invariants();
		run Thread(W1, P1);
		run Thread(W3, P1);
		run Thread(X, P2)
	}
}
