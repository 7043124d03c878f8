/*
 * vm_const.pml: the constants a scenario file needs before it writes its thread
 * programs (next_op) and includes vm_fault.pml.
 */

#define NONE      255
#define NOBJ      2
#define S         0       /* the top object (first_object of the shadowed entries) */
#define O         1       /* its backing object */
#define NAS       3       /* address spaces: one PTE and one map entry each */
#define NPAGES    3       /* page frames; a freed frame is reused */

#define OP_END    0
#define OP_READ   1
#define OP_WRITE  2
#define OP_WAIT   3
#define OP_POST   4
#define OP_EXIT   5
