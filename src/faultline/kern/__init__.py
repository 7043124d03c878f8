"""faultline.kern: FreeBSD's VM fault path as runnable model code.

`FREEBSD_NAMES` maps the model functions whose names differ from the FreeBSD function
they model (the policy predicates name the place in the function they decide); every
other model function carries its FreeBSD name.  `PRIMITIVE_WRAPPERS` lists the model
functions that only wrap one FreeBSD primitive (a refcount, a blockcount, a busy or
lock operation): the counterexample view counts their steps as their caller's.
"""

FREEBSD_NAMES: dict[str, str] = {
    "vm_fault_found": "vm_fault (found:)",
    "vm_fault_walk": "vm_fault (shadow chain loop)",
    "_vm_fault_cow_rename": "vm_fault_cow (rename)",
    "_vm_fault_cow_copy": "vm_fault_cow (copy)",
    "_soft_fast_fail": "vm_fault_soft_fast (fail)",
    "_collapse_full": "vm_object_collapse",
    "_collapse_bypass": "vm_object_collapse (bypass)",
    "_fork_share": "vmspace_fork (VM_INHERIT_SHARE)",
    "_fork_copy": "vmspace_fork (VM_INHERIT_COPY)",
    "_pv_lock_change": "CHANGE_PV_LIST_LOCK_TO_PHYS",
    "_refcount_release_if_gt": "refcount_release_if_gt",
    "_refcount_release": "refcount_release",
    "_refcount_acquire_if_not_zero": "refcount_acquire_if_not_zero",
    "_clip_at": "vm_map_clip_start / vm_map_clip_end (vm_map_entry_clone)",
    "_vm_map_wire_undo": "vm_map_wire_locked (done: undo)",
    "vm_map_wait_in_transition": "vm_map_entry_in_transition / vm_map_wait_busy",
    "proc_touch": "trap (user access)",
    "pmap_user_access": "MMU (page walk + access)",
    "vm_mmap": "vm_mmap_object",
    "sys_munmap": "kern_munmap",
    "sys_mprotect": "kern_mprotect",
    "sys_minherit": "kern_minherit",
    "sys_mlock": "kern_mlock",
    "sys_munlock": "kern_munlock",
    "exit1": "exit1",
    "fork1": "fork1",
    "setup": "(scenario setup)",
    "run_thread": "(scenario thread)",
    "do_op": "(scenario op)",
    "do_fork": "fork1",
    "do_exec": "kern_execve",
    "vmspace_teardown": "vmspace_exit",
    "vm_object_allocate_vnode": "vnode_create_vobject",
    "vm_page_free_unowned": "vm_page_free_toq",
    "vm_object_busy_wait_locked": "vm_object_busy_wait",
    "vm_page_unbusy": "vm_fault_page_release (xunbusy or sunbusy)",
    "pmap_create": "pmap_pinit",
    "vm_map_clip": "vm_map_clip_start / vm_map_clip_end",
    "flag_post": "(scenario event post)",
    "flag_wait": "(scenario event wait)",
    "start_thread": "(scenario thread start)",
    "vm_pageout_at": "vm_pageout (scenario's pageout ADDR)",
    "vm_pageout_find": "vm_pageout_scan_inactive (victim: the page at ADDR)",
    "vm_pageout_launder": "vm_pageout_launder / vm_pageout_clean",
    "_pmap_enter_quick_locked": "pmap_enter_quick_locked",
    "_pmap_enter_update": "pmap_enter (validate: same page)",
    "_pte_clear": "pte_load_clear",
    "_pte_store": "pte_store",
    "_pv_list_insert": "pmap_enter (pv list insert)",
    "_pv_list_remove": "pmap_pvh_remove",
    "_assert_object_locked": "VM_OBJECT_ASSERT_LOCKED",
    # Policy predicates (kern.policy): the place in FreeBSD's function they decide.
    "vm_fault_object_may_sbusy": "vm_fault_object (sbusy only?)",
    "vm_fault_object_sbusy_recheck": "vm_fault_object (sbusy recheck)",
    "vm_fault_cow_must_remove_all": "vm_fault_cow (copy: pmap_remove_all?)",
    "vm_fault_cow_may_rename": "vm_fault_cow (rename?)",
    "vm_fault_cow_rename_recheck": "vm_fault_cow (rename recheck, both locked)",
    "vm_fault_retry_lookup": "vm_fault (RetryFault: vm_fault_lookup)",
}

PRIMITIVE_WRAPPERS: frozenset[str] = frozenset({
    "_refcount_release_if_gt", "_refcount_release", "_refcount_acquire_if_not_zero",
    "vm_object_reference_locked", "vm_object_pip_add", "vm_object_pip_wakeup",
    "_pv_lock_change", "_pte_clear", "_pte_store",
    "vm_page_trysbusy", "vm_page_tryxbusy", "vm_page_xunbusy", "vm_page_sunbusy",
    "vm_page_unbusy", "vm_page_free_unowned", "vm_page_busy_sleep",
    "vm_map_lock", "vm_map_unlock", "vm_map_lock_read", "vm_map_unlock_read",
    "vm_map_lock_upgrade", "vm_map_lock_downgrade",
})


def freebsd_name(model_function: str) -> str:
    """The FreeBSD function a model function models."""
    return FREEBSD_NAMES.get(model_function, model_function)
