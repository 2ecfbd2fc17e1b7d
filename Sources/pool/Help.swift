/// Help texts, in the conventional shape: usage, description, options, examples.
enum Help {
    static let overview = """
    usage: pool <command> [options]

    Run jobs in parallel worker processes: shell commands over inputs (like GNU parallel and
    xargs -P), or typed Swift jobs served by a worker binary.

    commands:
      run     run a command once per input, in parallel
      map     run a worker binary's job on JSON lines
      jobs    list the jobs a worker binary serves
      help    show help for a command (pool help run)

    options:
      -h, --help     show this help
      --version      show the version

    examples:
      pool run gzip -k ::: *.log
      find . -name '*.txt' | pool run -j 4 'wc -l {} > {}.count'
      pool jobs --worker .build/release/my-worker
      pool map --worker .build/release/my-worker --job count-primes < ranges.jsonl

    """

    static let map = """
    usage: pool map --job NAME [--worker PATH] [-j N] [-k] [--timeout SECS]

    Reads JSON Lines from stdin, one job input per line, runs the job NAME of the worker binary
    on each (default worker: pool-worker next to pool), and writes JSON Lines to stdout:

      {"line":N,"output":OUTPUT}
      {"line":N,"error":{"code":CODE,"message":TEXT,"worker":PID}}

    N is the input's line number (from 1). A line that is not JSON (code invalidJSON), that is
    longer than a frame can carry (256 MiB, code lineTooLong; it is dropped as it is read), or
    that the worker cannot decode as the job's input (code decodingFailed), gets an error record
    that says what was wrong; every other line is processed. What a worker answers is checked before
    it is printed: anything but one JSON value is an error record (code protocolViolation)
    naming the worker's pid, and an output is always written on one line.

    options:
      --job NAME       the job to run (pool jobs lists them)
      --worker PATH    the worker binary
      -j, --jobs N     workers (default: the number of cores); N% of the cores
      -k, --keep-order write records in input order
      --timeout SECS   stop a line's job after SECS seconds (code timedOut); its worker is
                       replaced
      -S, --sshlogin, --slf, --ssh, --filter-hosts, --slurm, --worker-cache  run on other machines, as for
                       pool run

    exit status: 0 if every line succeeded; otherwise the number of failed lines, at most 101;
    2 for a usage error; 255 if pool itself failed.

    example:
      printf '1\n2\nnot json\n' | pool map --worker ./my-worker --job square -k

    """

    static let run = """
    usage: pool run [options] COMMAND [ARGS...] [::: INPUT... | :::: FILE...]...

    Runs COMMAND once per input, on -j workers at a time. Inputs follow ':::', or are the lines
    of the files after '::::' or given with -a ('-' is stdin), or come one per line on stdin
    (-0: separated by NUL bytes). The first word that is not an option starts the command
    ('--' also ends the options); the first word spelled like a separator ends it.

    With no COMMAND, each input (each job's values, joined by spaces) is a command line, run
    by /bin/sh as it is: pool run ::: 'make a' 'make b', or commands one per line on stdin.

    input sources: each ':::' or '::::' file is a source; a job takes one value from each, and
    the jobs are every combination of them, the last source varying fastest (as GNU parallel):
      pool run echo {1}-{2} ::: x y ::: 1 2      x-1 x-2 y-1 y-2
    ':::+' and '::::+' pair a source with the one before it, value by value, up to the shorter;
    --link pairs all of them, the shorter ones starting over. A source with no values makes no
    jobs. A file that cannot be opened stops the run before any job (exit 255). A word of
    three colons or more that is not one of :::, :::+, ::::, ::::+ is a usage error.

    A command of several words runs directly from its argument vector, with no shell, so
    inputs are never split or interpreted. A command given as one word with spaces or shell
    syntax runs under /bin/sh -c (as GNU parallel runs it), and so does any command with
    --shell; there, every substituted input is shell-quoted, so an input can never become code.

    replacement strings (where none appears, the job's values are appended as arguments):
      {}    the input (all of the job's values)   {.}   without its extension
      {/}   the basename                           {//}  the directory
      {/.}  basename without extension
      {N}   the value from source N (from 1); {-N} counts from the last; empty if none.
            {N.} {N/} {N//} {N/.} as above
      {#}   the job's number (1, 2, ...)
      {%}   the job slot (1 ... -j) of the worker that runs it
    Where {} stands for several values, the word splits between them: pre{}post with a and b
    gives the two arguments prea and bpost (GNU parallel's shell would split it the same way).

    options:
      -j, --jobs N     run N jobs at once (default: the number of cores); N% of the cores
      -k, --keep-order print output in input order (jobs still run in any order)
      --tag            prefix each output line with the input and a tab
      --tagstring STR  prefix each output line with STR and a tab; STR may hold replacement
                       strings ({1}, {#}, ...)
      --timeout SECS   stop a job after SECS seconds (its process group gets SIGTERM, then
                       SIGKILL); it counts as failed
      --retries N      run a failed job (non-zero exit, signal, timeout) up to N more times
      --shell          run the command under /bin/sh -c
      -0, --null       read NUL-separated inputs from stdin and input files
      -d, --delimiter DELIM  inputs in stdin and input files end with DELIM (any bytes;
                       \n \t \r \0 \\ are escapes) instead of a newline
      -a, --arg-file FILE  an input source read from FILE (repeatable; before the ::: ones)
      --pipe           cut stdin into blocks and give each job one block on its stdin (the
                       command gets no input arguments); blocks are cut only where a record
                       ends, so no record is split, and with -k the output follows the blocks
      --pipepart       with -a FILE (or :::: FILE): cut the regular file into blocks by
                       offsets; only the bytes around each cut are read, and each worker
                       sends its block's range to the command itself. A block is at least
                       --block bytes, up to the next record end (as GNU parallel cuts it)
      --block SIZE     a --pipe block's size (default 1M; K, M, G are powers of 1024 and
                       k, m, g of 1000, as in GNU parallel; at most 128M); a record longer
                       than that is a block of its own
      --recend STR     what ends a record for --pipe (default \n; \0 and the -d escapes work)
      --recstart STR   with --pipe, cut only where a record starts with STR (after --recend
                       if that is given too; alone, as in GNU parallel, with no record end)
      -N N             with --pipe: N records per block instead of --block bytes
      --cat            with --pipe or --pipepart: the block goes in a temporary file named
                       by {} (removed when the job ends) instead of on the command's stdin
      --fifo           with --pipe or --pipepart: the block goes through a named pipe named
                       by {}, written as the command reads it. A command that never opens it
                       just ends (GNU parallel waits for ever)
      -C, --colsep REGEX  split each input into columns, the values {1} {2} ... (a line
                       that is not UTF-8 is matched byte by byte, and no byte changes)
      --header :       the first input of each source names its values (its columns, with
                       --colsep): {name} stands for the value under that name. --header N:
                       the first N inputs are the header; any other value: the first input.
                       With --pipe or --pipepart, the header (: one line, N lines, or what
                       a REGEX matches at the start) goes before every block; a REGEX that
                       matches nothing means no header (GNU parallel then runs one job)
      -n, --max-args N up to N inputs per job, their values one after another ({1} {2}
                       ... count across them); -N N is the same here. -n 0: none passed
      -m               as many inputs per job as fit -s; where {} stands in a word, the
                       word splits between the values (pre{}post: prea b cpost). With -j
                       above 1, the inputs spread evenly over the job slots when they fit
                       one command line each, as in GNU parallel (they are read first to
                       count them, up to 65536). Otherwise each command line is filled and
                       the last may be short (GNU parallel evens out the last few)
      -X               like -m, but the word around {} is repeated for each value
                       (pre{}post: preapost prebpost precpost); under a shell, like -m
      -s, --max-chars N  the longest command -m and -X make, counting each argument and
                       its NUL (default 131071)
      --link           pair the input sources value by value instead of combining them
      -I STR           spell {} as STR; --extensionreplace ({.}), --basenamereplace ({/}),
                       --dirnamereplace ({//}), --basenameextensionreplace ({/.}),
                       --seqreplace ({#}) and --slotreplace ({%}) respell the others
      --dry-run        print the commands instead of running them
      --joblog FILE    log each finished job (GNU parallel's columns: Seq Host Starttime
                       JobRuntime Send Receive Exitval Signal Command)
      --resume         skip the jobs FILE lists; --resume-failed: skip only those that
                       succeeded (rerun failed ones)
      --results DIR    save each job's stdout, stderr, exitval, input and command in DIR/N/
      --halt WHEN,fail=N   stop after N failed jobs (or N% of those finished, from 3 on):
                       soon lets running jobs finish, now stops them too. WHEN,success=N
                       stops after N jobs succeeded instead, and exits 0
      --delay SECS     start jobs at least SECS seconds apart
      --nice N         run the commands with niceness N (-20 to 19), under nice(1)
      --memfree SIZE   start no job while less than SIZE of memory (as --max-output) is available
                       (MemAvailable in /proc/meminfo), checked every 0.2 s; says so once on
                       stderr. Unlike GNU parallel, a running job is never killed for it
      --shuf           run the jobs in a random order ({#} and -k follow that order); not
                       with --pipe, as in GNU parallel
      --bar            show a progress bar (count, rate, ETA) on stderr when it is a terminal;
                       until the number of jobs is known (inputs still being read), the
                       count, the rate and the time so far
      --eta            show the time left, the jobs left and the average time per job
      --progress       show the workers, the jobs finished and the percentage
      --line-buffer    print output a line at a time as jobs write it (lines of different
                       jobs mix, but no line is cut); with -k, later jobs' lines wait their turn
      --max-output SIZE  the most output one job may write, stdout and stderr together
                       (bytes, or with K, M, G, T, P or E, powers of 1024, or k, m, g, t,
                       p, e, powers of 1000; default 255M): a job that writes more is
                       killed and fails saying so, so that no job's output takes all memory
      --worker PATH    the worker binary (default: pool-worker next to pool)
      -S, --sshlogin LOGINS  also run on other machines: [N/][sshcommand ]{[user@]host[:port] | :}
                       separated by commas, ':' for this one, N jobs there (default -j);
                       one ssh connection per host, which starts the worker there
      --slf, --sshloginfile FILE  the logins in FILE, one list per line (# comments)
      --ssh CMD        the ssh command for logins that name none (default: ssh)
      --filter-hosts   accepted as GNU parallel takes it: a host that cannot be reached is
                       always left out (said on stderr), and tried again with a backoff
      --slurm          run on the nodes of the Slurm allocation pool runs in (salloc,
                       sbatch): one srun step per node, as many jobs as Slurm gave it
      --worker-cache DIR  copy the worker binary into DIR (relative to the home folder) on
                       ssh hosts that lack it, named by its SHA-256
      --transferfile, --tf FILE  send FILE (a template, such as {}) to the host before the
                       job: a relative path lands under --workdir, /./ marks where it starts
      --return FILE    bring FILE (a template) back from the host after the job, to the same
                       path here
      --cleanup        remove the sent and returned files from the host afterwards
      --trc FILE       --transferfile {} --return FILE --cleanup
      --workdir, --wd DIR  where commands run on a host: DIR relative to the home folder, '.'
                       for this folder's path under home, '...' for a new folder of each
                       job's own, removed after it (default: the home folder). On this
                       machine (':') files are in place already: none is sent or returned

    Unlike GNU parallel, a command of several words is not joined into a line for a shell: each
    word is one argument, so an empty value ({3} with two sources) is an empty argument, and
    quotes and $ in a value are never interpreted.

    Inputs are bytes, like Linux file names: one that is not UTF-8 reaches the command, --tag,
    --results and the job log unchanged. An input with a NUL byte, or longer than an argument
    can be (131071 bytes), fails alone; the other jobs run.

    Each job's stdout and stderr are printed whole when it ends, never mixed with another's.
    Output is collected until the command exits: what a process it leaves running in the
    background writes later is not printed.

    The first Ctrl-C (or SIGTERM) stops starting jobs, stops the running ones, completes the job
    log and exits 130 (143); a second one exits at once. Jobs stopped that way are not in the
    job log, so --resume runs them again.

    exit status: 0 if every job succeeded; otherwise the number of failed jobs, at most 101;
    2 for a usage error; 255 if pool itself failed; 130/143 when interrupted.

    examples:
      pool run gzip -k ::: *.log
      pool run -j 2 -k sha256sum ::: *.iso
      ls *.png | pool run convert {} {.}.jpg
      pool run 'gzip -c {} > {}.gz' ::: *.txt
      pool run --timeout 30 --retries 2 ./flaky-test ::: 1 2 3
      pool run --line-buffer --tag ping -c 3 ::: host1 host2
      pool run --pipepart -a big.csv --header : --block 10M ./count-rows

    """

    static let jobs = """
    usage: pool jobs [--worker PATH]

    Starts the worker binary (default: pool-worker next to pool) and lists the jobs it serves,
    one name per line, from its handshake.

    example:
      pool jobs --worker .build/release/my-worker

    """
}
