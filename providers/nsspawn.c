/* The resident job launcher's fork, in C (providers/nslauncher.py loads it with ctypes when it was built).

Why: the launcher is a Python process, and a fork of it copies its page tables, then every page Python touches in
the child before the exec is copied once more, and the exec tears it all down: about half of what the launcher
costs per job. Here the child shares the launcher's memory (CLONE_VM) on a stack of its own while the launcher
waits (CLONE_VFORK), so nothing is copied, and it runs only system calls until its exec.

It does exactly what nslauncher._child does, in the same order: a new mount and PID namespace, its own session,
death with the launcher, default SIGPIPE and SIGXFSZ, `/` private, /workflow bound, each hidden folder an empty
read-only tmpfs, the project bound (recursively) at /mnt/code, the namespace's own /proc, stdin from /dev/null,
stdout and stderr to the log, cwd, exec. A failure is written to `failure` (the step and errno) and the child
exits 127; the caller reaps it and says which step failed.

Built by `make` (cc -O2 -shared -fPIC); without it the launcher forks itself as before. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <unistd.h>

#define STACK_BYTES (256 * 1024)

struct job {
    const char *workflow;      /* the job's folder, bound at /workflow */
    const char *const *hidden; /* NULL-terminated: folders covered by an empty read-only tmpfs */
    const char *code;          /* the project root: bound at /mnt/code, and the job's cwd */
    const char *path;          /* the program to exec (bash) */
    char *const *argv;
    char *const *envp;
    int log_fd;                /* the job's stdout and stderr */
    int failed_step;           /* out: 0 when the exec happened, else the step that failed (FLOWS_STEP_*) */
    int failed_errno;          /* out: its errno */
};

enum {
    STEP_SETSID = 1, STEP_PDEATHSIG, STEP_SIGNALS, STEP_PRIVATE, STEP_WORKFLOW, STEP_HIDE, STEP_CODE, STEP_PROC,
    STEP_STDIO, STEP_CHDIR, STEP_EXEC
};

static char stack[STACK_BYTES] __attribute__((aligned(16)));

static int fail(struct job *job, int step) {
    job->failed_step = step;
    job->failed_errno = errno;
    _exit(127);
}

static int child(void *arg) {
    struct job *job = arg;
    if (setsid() < 0) return fail(job, STEP_SETSID);
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return fail(job, STEP_PDEATHSIG);
    /* Handlers of the launcher's own (Python's) must never run here, in memory shared with it: every signal
       with a handler goes back to its default, and SIGPIPE and SIGXFSZ (which Python ignores) too. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction old;
        if (sig == SIGKILL || sig == SIGSTOP || sigaction(sig, NULL, &old) != 0) continue;
        if (old.sa_handler != SIG_IGN || sig == SIGPIPE || sig == SIGXFSZ) sigaction(sig, &dfl, NULL);
    }
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) != 0) return fail(job, STEP_SIGNALS);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) return fail(job, STEP_PRIVATE);
    /* Order matters: /workflow is bound before .flows/ (which holds the job folder) is hidden, the project
       after, recursively, so /mnt/code/.flows is hidden too. */
    if (mount(job->workflow, "/workflow", NULL, MS_BIND, NULL) != 0) return fail(job, STEP_WORKFLOW);
    for (const char *const *folder = job->hidden; *folder; folder++)
        if (mount("flows-hidden", *folder, "tmpfs", MS_RDONLY, "size=4k,mode=0555") != 0)
            return fail(job, STEP_HIDE);
    if (mount(job->code, "/mnt/code", NULL, MS_BIND | MS_REC, NULL) != 0) return fail(job, STEP_CODE);
    if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) return fail(job, STEP_PROC);
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0 || dup2(job->log_fd, 1) < 0 || dup2(job->log_fd, 2) < 0)
        return fail(job, STEP_STDIO);
    if (null > 2) close(null);
    if (chdir(job->code) != 0) return fail(job, STEP_CHDIR);
    execve(job->path, job->argv, job->envp);
    return fail(job, STEP_EXEC);
}

/* Start one job; returns its pid (in the launcher's namespace), or -1 with errno set when the clone itself
   failed. A child that failed before its exec has exited 127 with job->failed_step set: the caller reaps it. */
pid_t flows_spawn(struct job *job) {
    sigset_t all, old;
    sigfillset(&all);
    /* No signal handler of the launcher may run in the child before it has reset them. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    job->failed_step = 0;
    job->failed_errno = 0;
    pid_t pid = clone(child, stack + STACK_BYTES, CLONE_VM | CLONE_VFORK | CLONE_NEWNS | CLONE_NEWPID | SIGCHLD, job);
    int saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return pid;
}
