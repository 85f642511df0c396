{
  "targets": [
    {
      "target_name": "berth_fuse",
      "sources": ["client/native/berth-fuse.c"],
      "include_dirs": ["<!@(pkg-config fuse3 --cflags-only-I | sed s/-I//g)"],
      "libraries": ["<!@(pkg-config fuse3 --libs)"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
    },
    {
      "target_name": "berth_sums",
      "sources": ["common/native/berth-sums.c"],
      "libraries": ["-ldl"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
    },
    {
      "target_name": "berth_aligned",
      "sources": ["node/native/berth-aligned.c"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
    }
  ]
}
