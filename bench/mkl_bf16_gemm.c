// Times oneMKL's cblas_gemm_bf16bf16f32 on the 0.5B training step's product
// shapes (4,096 tokens), 2 threads (each a sequential MKL call on half the
// output rows, as trainer/src/ops/mkl.rs runs it); best of 4. The check that
// chose oneMKL for the trainer's bf16 products (docs/BENCHMARKS.md).
//
//   gcc -O2 -o /tmp/mkl_bf16_gemm bench/mkl_bf16_gemm.c -ldl -lpthread
//   flock -x /tmp/cpu.lock /tmp/mkl_bf16_gemm "$(kernels/mkl.sh | tail -n 1)"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <pthread.h>
// MKL_INT is int in the LP64 interface libmkl_rt gives by default.
typedef void (*gemm_t)(int,int,int,int,int,int,float,const unsigned short*,int,const unsigned short*,int,float,float*,int);
typedef int (*setl_t)(int);
static gemm_t g;
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
struct job{int ta,tb;long m,n,k;unsigned short*a,*b;float*c;long lda,ldb,ldc;};
static void* run(void*p){struct job*j=p; g(101,j->ta,j->tb,j->m,j->n,j->k,1.f,j->a,j->lda,j->b,j->ldb,0.f,j->c,j->ldc);return 0;}
// C[m,n] = op(A) op(B); split m over 2 threads (row-major; for ta=Trans A is k x m so offset by column)
static void bench(const char*name,int ta,int tb,long m,long n,long k){
  unsigned short*a=malloc(2*m*k),*b=malloc(2*k*n); float*c=malloc(4*m*n);
  for(long i=0;i<m*k;i++)a[i]=0x3f80^(i&0x7f);
  for(long i=0;i<k*n;i++)b[i]=0x3f00^(i&0x7f);
  long lda= ta==112? m:k, ldb= tb==112? k:n;
  double best=1e9;
  for(int r=0;r<4;r++){
    double t0=now();
    pthread_t th[2]; struct job j[2];
    for(int h=0;h<2;h++){long m0=m*h/2,m1=m*(h+1)/2;
      j[h]=(struct job){ta,tb,m1-m0,n,k, ta==112? a+m0: a+m0*lda, b, c+m0*n, lda,ldb,n};
      pthread_create(&th[h],0,run,&j[h]);}
    for(int h=0;h<2;h++)pthread_join(th[h],0);
    double t=now()-t0; if(t<best)best=t;}
  printf("%-28s m%5ld n%6ld k%5ld  %.4f s  %.0f GFLOP/s\n",name,m,n,k,best,2.0*m*n*k/best/1e9);
  free(a);free(b);free(c);
}
int main(int argc,char**argv){
  if(argc<2){fprintf(stderr,"usage: %s PATH/libmkl_rt.so.2\n",argv[0]);return 2;}
  void*h=dlopen(argv[1],RTLD_NOW|RTLD_GLOBAL); if(!h){printf("%s\n",dlerror());return 1;}
  ((setl_t)dlsym(h,"MKL_Set_Threading_Layer"))(1);
  g=(gemm_t)dlsym(h,"cblas_gemm_bf16bf16f32"); if(!g){printf("no sym\n");return 1;}
  long T=4096;
  bench("mlp up fwd x@W^T",111,112,T,4864,896);
  bench("mlp down fwd",111,112,T,896,4864);
  bench("qkv fwd",111,112,T,1152,896);
  bench("o fwd",111,112,T,896,896);
  bench("mlp up dX g@W",111,111,T,896,4864);
  bench("mlp up dW g^T@x",112,111,4864,896,T);
  bench("mlp down dW",112,111,896,4864,T);
  bench("lmhead chunk fwd",111,112,256,151936,896);
  bench("lmhead chunk dX",111,111,256,896,151936);
  bench("lmhead chunk dW",112,111,151936,896,256);
  bench("lmhead 1024-row chunk fwd",111,112,1024,151936,896);
  bench("lmhead 1024-row chunk dX",111,111,1024,896,151936);
  bench("lmhead 1024-row chunk dW",112,111,151936,896,1024);
  return 0;}
