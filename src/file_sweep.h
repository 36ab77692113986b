/* file_sweep: the local store's clean-up of what has outlived its use:
 * expired entries, old round results and marks, temporaries of leaders
 * that died, and tag records of gone entries. Never a lock file: unlinking
 * one that another process is about to lock would let two leaders run. */
#ifndef CACHEFENCE_FILE_SWEEP_H
#define CACHEFENCE_FILE_SWEEP_H

#include <stdbool.h>

struct file_store;

/* true once in SWEEP_ODDS calls, at random */
bool file_sweep_due(void);

/* sweep the store directory, under the commit lock; best effort */
void file_sweep(struct file_store *fs);

#endif
