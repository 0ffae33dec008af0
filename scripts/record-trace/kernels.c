/*
 * Scientific kernels for trace recording (scripts/record-trace/record.sh):
 *   cg N ITERS      conjugate gradient on the 2-D Laplacian (5-point stencil, N×N grid)
 *   pagerank N DEG ITERS   pagerank on a random power-law graph (CSR)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long rng = 88172645463325252ULL;
static unsigned long long next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static void laplace(int n, const double *x, double *y)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++) {
			double v = 4 * x[i * n + j];
			if (i > 0) v -= x[(i - 1) * n + j];
			if (i < n - 1) v -= x[(i + 1) * n + j];
			if (j > 0) v -= x[i * n + j - 1];
			if (j < n - 1) v -= x[i * n + j + 1];
			y[i * n + j] = v;
		}
}

static double dot(int m, const double *a, const double *b)
{
	double s = 0;
	for (int i = 0; i < m; i++) s += a[i] * b[i];
	return s;
}

static int cg(int n, int iters)
{
	int m = n * n;
	double *x = calloc(m, 8), *r = malloc(m * 8), *p = malloc(m * 8), *q = malloc(m * 8);
	for (int i = 0; i < m; i++) r[i] = p[i] = (double)(next() % 1000) / 1000.0;
	double rr = dot(m, r, r);
	for (int k = 0; k < iters; k++) {
		laplace(n, p, q);
		double a = rr / dot(m, p, q);
		for (int i = 0; i < m; i++) { x[i] += a * p[i]; r[i] -= a * q[i]; }
		double rr2 = dot(m, r, r);
		for (int i = 0; i < m; i++) p[i] = r[i] + rr2 / rr * p[i];
		rr = rr2;
	}
	printf("%g\n", rr);
	return 0;
}

static int pagerank(int n, int deg, int iters)
{
	int *off = malloc((n + 1) * sizeof(int)), *dst = malloc((size_t)n * deg * sizeof(int));
	double *pr = malloc(n * 8), *nx = malloc(n * 8);
	int *outdeg = calloc(n, sizeof(int));
	for (int v = 0; v <= n; v++) off[v] = v * deg;
	for (long e = 0; e < (long)n * deg; e++) {
		/* power-law targets: popular vertices get most in-edges */
		double u = (double)(next() % 1000000) / 1000000.0 + 1e-7;
		int t = (int)(n * pow(u, 3.0));
		dst[e] = t >= n ? n - 1 : t;
	}
	for (int v = 0; v < n; v++) { pr[v] = 1.0 / n; outdeg[v] = deg; }
	for (int k = 0; k < iters; k++) {
		memset(nx, 0, n * 8);
		for (int v = 0; v < n; v++)
			for (int e = off[v]; e < off[v + 1]; e++) nx[dst[e]] += pr[v] / outdeg[v];
		for (int v = 0; v < n; v++) pr[v] = 0.15 / n + 0.85 * nx[v];
	}
	printf("%g\n", pr[0]);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 4 && !strcmp(argv[1], "cg")) return cg(atoi(argv[2]), atoi(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "pagerank")) return pagerank(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
	fprintf(stderr, "usage: kernels cg N ITERS | pagerank N DEG ITERS\n");
	return 2;
}
