/*
 * pingpong — the time of an MPI message between two ranks as the training
 * ranks see it: `bytes` from rank ra to rank rb, answered by one byte,
 * measured on ra. Used by the test bed's calibration
 * (orchestrator/testbed.c) and by tools/mpiprobe.
 */
#ifndef PINGPONG_H
#define PINGPONG_H

#include <mpi.h>

/* Collective over ranks ra and rb of comm (others return at once): one
 * warm-up, then `reps` exchanges on tags 1 and 2 (nothing else in flight
 * between the two). Returns the median seconds on ra, 0 elsewhere. buf holds
 * at least `bytes`; times holds at least `reps` doubles (scratch). */
double pp_median(MPI_Comm comm, int me, int ra, int rb, char *buf, int bytes, int reps,
                 double *times);

#endif
