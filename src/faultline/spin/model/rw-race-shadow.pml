/*
 * rw-race-shadow (src/faultline/scenario/catalog/rw-race-shadow.toml), projected on
 * page 0: the review's race (markj on vm_fault.c:1809).  p1 maps the file private and
 * writable; its setup write to page 1 made the shadow S over the file's vnode object
 * O.  Page 0 lives only in O, as B: p0's shared read-only mapping of the file maps
 * it.  In p1, thread R reads page 0 twice and thread W writes 7 to it, then reads it.
 * Both faults may share-busy B below S; the xbusied placeholder first_m in S must
 * serialize them, so that W's copy is never hidden behind a read-only mapping of B.
 *
 * S is anonymous but its handle is O's (vm_object_allocate_anon inherits it), and O
 * is not OBJ_ANON: never a rename.  S is OBJ_ONEMAPPING: no pmap_remove_all.
 */

#include "vm_const.pml"

#define NTHREADS  2
#define NCELLS    2
#define NEVENTS   1

#define OBJ_ANON(o)         ((o) == S)
#define OBJ_HAS_HANDLE(o)   1

/* address spaces: the entry's protection and NEEDS_COPY, and its memory cell */
#define P1  0
#define P0  1
#define ENTRY_WRITABLE(a)    ((a) == P1)
#define ENTRY_NEEDS_COPY(a)  0
#define CELL(a)              (a)        /* p1's private copy; p0: the file */

/* the threads (ids from 1) and their ops */
#define R   1
#define W   2

inline next_op() {
	if
	:: me == R && pc < 2 -> kind = OP_READ                  /* read 0x1000; read 0x1000 */
	:: me == W && pc == 0 -> kind = OP_WRITE; val = 7       /* write 0x1000 7 */
	:: me == W && pc == 1 -> kind = OP_READ                 /* read 0x1000 */
	:: else -> kind = OP_END
	fi
}

#include "vm_fault.pml"

init {
	atomic {
		/* the state after setup (faultline: the setup thread's last step) */
		obj_backing[S] = O; obj_ref[S] = 1; obj_onemapping[S] = 1;
		obj_ref[O] = 3;                       /* S, p0's entry, the file */
		pg_obj[0] = O; obj_page[O] = 0; pg_valid[0] = 1; pg_val[0] = 10;   /* B */
		entry_obj[P1] = S; entry_obj[P0] = O;
		pte[P0] = 0;                          /* p0's read mapped B read-only */
		cell[0] = 10; cell[1] = 10;
		run invariants();
		run Thread(R, P1);
		run Thread(W, P1)
	}
}
