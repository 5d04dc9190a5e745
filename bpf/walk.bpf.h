/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The walk's parts, assembled: every kind's fill functions (kinds/*.bpf.h,
 * over base.bpf.h) and the selection (select.bpf.h), for the programs that
 * walk tasks (trigger.bpf.h inside the event, complete.bpf.h after it). A
 * kind a mode does not ask for costs nothing there: its calls sit behind
 * .rodata switches (cfg_flags) or programs that are not loaded, which the
 * verifier never visits. See base.bpf.h for the layers.
 */
#ifndef WALK_BPF_H
#define WALK_BPF_H

#include "base.bpf.h"
#include "kinds/task.bpf.h"
#include "kinds/file.bpf.h"
#include "kinds/stack.bpf.h"
#include "kinds/activity.bpf.h"
#include "kinds/socket.bpf.h"
#include "kinds/proc.bpf.h"
#include "kinds/cmdline.bpf.h"
#include "kinds/map.bpf.h"
#include "kinds/event.bpf.h"
#include "kinds/ustack.bpf.h"
#include "kinds/oncpu.bpf.h"
#include "select.bpf.h"

#endif /* WALK_BPF_H */
