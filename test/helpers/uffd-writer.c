/*
 * uffd-writer: holds a buffered write(2) inside the kernel at a chosen point,
 * so a test can drive the exact interleaving of a write and a page-cache
 * invalidation on a FUSE mount (test/write-invalidate-race.test.ts).
 *
 *   uffd-writer PATH OFFSET HEAD TAIL GOFILE
 *
 * One pwrite of HEAD bytes 'B' then TAIL bytes 'C' at OFFSET. OFFSET + HEAD
 * must end on a page boundary: the 'C' part's source is a page registered
 * with userfaultfd, so the kernel copies the 'B' part into the file's page,
 * unlocks that page (it is uptodate) and then faults on the 'C' part before
 * it has sent the WRITE to the file system. The fault is answered only once
 * GOFILE exists. Prints "fault" when the write is held and "wrote N" at the
 * end; exits 1 with a message on any error.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static long page;
static int uffd;
static const char *gofile;

static void die(const char *what) {
  fprintf(stderr, "uffd-writer: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void *serve(void *arg) {
  (void)arg;
  struct pollfd p = {.fd = uffd, .events = POLLIN};
  if (poll(&p, 1, -1) != 1) die("poll");
  struct uffd_msg msg;
  if (read(uffd, &msg, sizeof msg) != sizeof msg) die("read uffd");
  if (msg.event != UFFD_EVENT_PAGEFAULT) {
    errno = EPROTO;
    die("unexpected uffd event");
  }
  printf("fault\n");
  fflush(stdout);
  struct stat st;
  while (stat(gofile, &st) != 0) usleep(1000);
  char *src = aligned_alloc((size_t)page, (size_t)page);
  if (!src) die("alloc");
  memset(src, 'C', (size_t)page);
  struct uffdio_copy copy = {
      .dst = msg.arg.pagefault.address & ~((unsigned long long)page - 1),
      .src = (unsigned long long)(uintptr_t)src,
      .len = (unsigned long long)page,
  };
  if (ioctl(uffd, UFFDIO_COPY, &copy) < 0) die("UFFDIO_COPY");
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: uffd-writer PATH OFFSET HEAD TAIL GOFILE\n");
    return 2;
  }
  page = sysconf(_SC_PAGESIZE);
  long long offset = atoll(argv[2]);
  long head = atol(argv[3]), tail = atol(argv[4]);
  gofile = argv[5];
  if (head <= 0 || head > page || tail <= 0 || tail > page || (offset + head) % page != 0) {
    fprintf(stderr, "uffd-writer: OFFSET + HEAD must end on a page; 0 < HEAD, TAIL <= %ld\n", page);
    return 2;
  }
  int fd = open(argv[1], O_WRONLY);
  if (fd < 0) die("open");

  char *buf = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (buf == MAP_FAILED) die("mmap");
  memset(buf, 'B', (size_t)page); /* the first page is present; the second is not touched */

  uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
  if (uffd < 0) die("userfaultfd");
  struct uffdio_api api = {.api = UFFD_API};
  if (ioctl(uffd, UFFDIO_API, &api) < 0) die("UFFDIO_API");
  struct uffdio_register reg = {
      .range = {.start = (unsigned long long)(uintptr_t)(buf + page), .len = (unsigned long long)page},
      .mode = UFFDIO_REGISTER_MODE_MISSING,
  };
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) die("UFFDIO_REGISTER");

  pthread_t t;
  if (pthread_create(&t, NULL, serve, NULL) != 0) die("pthread_create");
  ssize_t n = pwrite(fd, buf + page - head, (size_t)(head + tail), offset);
  if (n < 0) die("pwrite");
  pthread_join(t, NULL);
  if (close(fd) < 0) die("close");
  printf("wrote %zd\n", n);
  return 0;
}
