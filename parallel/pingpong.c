#include "pingpong.h"

#include "../common/et_stats.h"

double pp_median(MPI_Comm comm, int me, int ra, int rb, char *buf, int bytes, int reps,
                 double *times)
{
    int n = 0;
    for (int k = 0; k <= reps; k++) {
        if (me == ra) {
            double t0 = MPI_Wtime();
            MPI_Send(buf, bytes, MPI_CHAR, rb, 1, comm);
            MPI_Recv(buf, 1, MPI_CHAR, rb, 2, comm, MPI_STATUS_IGNORE);
            if (k > 0)
                times[n++] = MPI_Wtime() - t0;
        } else if (me == rb) {
            MPI_Recv(buf, bytes, MPI_CHAR, ra, 1, comm, MPI_STATUS_IGNORE);
            MPI_Send(buf, 1, MPI_CHAR, ra, 2, comm);
        }
    }
    return me == ra ? et_median(times, (size_t)n) : 0.0;
}
