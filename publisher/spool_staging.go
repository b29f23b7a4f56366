package publisher

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The staging directory (SpoolOptions.StagingDir) holds the newest
// segments, in memory (a tmpfs), under the window policy: see the
// spool's rules in spool.go. Besides segments it holds a stamp, a random
// id written when the directory is first used and recorded in the state
// file at open: a run that did not shut down cleanly staged segments that
// are gone when the directory no longer holds the stamp its state file
// names, a reboot (which empties a tmpfs) or the directory given up, and
// the spool takes a new id.
const stagingStampFile = "stamp"

// StagingNone is the --spool-staging setting that disables staging.
const StagingNone = "none"

// ChooseStagingDir returns the staging directory (SpoolOptions.StagingDir)
// of the spool at spoolPath as --spool-staging sets it, made if missing:
// "" takes the default, StagingNone none (""), anything else is the
// directory to stage in. The default is the first usable of
// $RUNTIME_DIRECTORY (systemd's RuntimeDirectory=), $XDG_RUNTIME_DIR/apd
// and /dev/shm/apd-<uid>. A directory is usable on a tmpfs only (a
// directory on the storage would save it nothing), owned by this user
// and writable. The spool stages in a subdirectory of it of its own,
// mode 0700, named by a hash of the spool's absolute path, so that two
// spools never share one. With no usable directory it returns "" and
// why.
func ChooseStagingDir(spoolPath, setting string) (string, error) {
	abs, err := filepath.Abs(spoolPath)
	if err != nil {
		return "", fmt.Errorf("staging directory: %w", err)
	}
	sum := sha256.Sum256([]byte(abs))
	sub := "spool-" + hex.EncodeToString(sum[:8])
	var bases []string
	switch setting = strings.TrimSpace(setting); setting {
	case StagingNone:
		return "", nil
	case "":
		bases = defaultStagingBases()
	default:
		bases = []string{setting}
	}
	var why []error
	for _, base := range bases {
		dir, err := prepareStagingDir(base, sub)
		if err == nil {
			return dir, nil
		}
		why = append(why, err)
	}
	return "", errors.Join(why...)
}

func defaultStagingBases() []string {
	var bases []string
	if d := os.Getenv("RUNTIME_DIRECTORY"); d != "" {
		// One per RuntimeDirectory= entry, colon-separated.
		bases = append(bases, strings.Split(d, ":")[0])
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		bases = append(bases, filepath.Join(d, "apd"))
	}
	return append(bases, fmt.Sprintf("/dev/shm/apd-%d", os.Geteuid()))
}

// prepareStagingDir makes base/sub if base is usable for staging.
func prepareStagingDir(base, sub string) (string, error) {
	// The nearest directory that exists tells the file system before
	// anything is made on it.
	at := base
	for {
		if _, err := os.Stat(at); err == nil || at == filepath.Dir(at) {
			break
		}
		at = filepath.Dir(at)
	}
	if err := checkTmpfs(at); err != nil {
		return "", fmt.Errorf("staging directory %s: %w", base, err)
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		return "", fmt.Errorf("staging directory %s: %w", base, err)
	}
	// systemd may make a preserved RuntimeDirectory= a symbolic link.
	real, err := filepath.EvalSymlinks(base)
	if err != nil {
		return "", fmt.Errorf("staging directory %s: %w", base, err)
	}
	if err := checkTmpfs(real); err != nil {
		return "", fmt.Errorf("staging directory %s: %w", base, err)
	}
	dir := filepath.Join(real, sub)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("staging directory %s: %w", base, err)
	}
	// Where every user may make directories (/dev/shm) another could
	// have made base first: only this user's own will do.
	for _, d := range []string{real, dir} {
		fi, err := os.Lstat(d)
		if err != nil {
			return "", fmt.Errorf("staging directory %s: %w", base, err)
		}
		if !fi.IsDir() || !ownedBySelf(fi) {
			return "", fmt.Errorf("staging directory %s: %s is not a directory of this user", base, d)
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return "", fmt.Errorf("staging directory %s: %w", base, err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return "", fmt.Errorf("staging directory %s: not writable: %w", base, err)
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return "", fmt.Errorf("staging directory %s: %w", base, err)
	}
	return dir, nil
}

func checkTmpfs(path string) error {
	tmpfs, err := onTmpfs(path)
	if err != nil {
		return err
	}
	if !tmpfs {
		return errors.New("not on a tmpfs")
	}
	return nil
}

// loadStaging reads the staging directory at open, staging or not (a run
// before may have staged): its segments join those of the spool
// directory in s.segs, in seq order, and its stamp is s.stamp. A segment
// in both directories is a move that did not finish; the spool
// directory's copy is taken if it holds every record of the staged one
// (it was written whole), else the staged one; the other is deleted.
func (s *Spool) loadStaging() error {
	if s.sdir == "" {
		return nil
	}
	if s.staging {
		if err := s.sfs.MkdirAll(s.sdir, 0o700); err != nil {
			return fmt.Errorf("create staging directory: %w", err)
		}
	}
	names, err := s.sfs.ReadDir(s.sdir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read staging directory: %w", err)
	}
	onCard := map[string]int{}
	for i, seg := range s.segs {
		onCard[seg.name] = i
	}
	for _, name := range names {
		if name == stagingStampFile {
			if s.stamp, err = s.readStamp(); err != nil {
				return err
			}
			continue
		}
		first, ok := parseSegmentName(name)
		if !ok {
			continue
		}
		seg, err := s.readSegment(name, first, true)
		if err != nil {
			return err
		}
		i, both := onCard[name]
		if !both {
			s.segs = append(s.segs, seg)
			continue
		}
		drop := seg
		if card := s.segs[i]; card.bad || card.next < seg.next {
			drop, s.segs[i] = card, seg
		}
		if err := s.removeSegment(drop); err != nil {
			return err
		}
	}
	slices.SortFunc(s.segs, func(a, b *segment) int { return cmp.Compare(a.first, b.first) })
	return nil
}

func (s *Spool) readStamp() (string, error) {
	f, err := s.sfs.OpenFile(filepath.Join(s.sdir, stagingStampFile), os.O_RDONLY, 0)
	if err != nil {
		return "", fmt.Errorf("read staging stamp: %w", err)
	}
	defer f.Close()
	b := make([]byte, 64)
	n, _ := f.ReadAt(b, 0)
	return strings.TrimSpace(string(b[:n])), nil
}

// stampStaging makes sure the staging directory holds a stamp when the
// spool stages (s.stamp, which the state file records), and forgets it
// when it does not.
func (s *Spool) stampStaging() error {
	if !s.staging {
		s.stamp = ""
		return nil
	}
	if s.stamp != "" {
		return nil
	}
	stamp := newSpoolID()
	f, err := s.sfs.OpenFile(filepath.Join(s.sdir, stagingStampFile), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write staging stamp: %w", err)
	}
	_, err = f.WriteAt([]byte(stamp+"\n"), 0)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write staging stamp: %w", err)
	}
	s.stamp = stamp
	return nil
}

// removeStaging deletes the staging directory after a clean shutdown
// emptied it, so that spools that are gone leave nothing in memory: the
// stamp goes with it, which only a run that did not shut down cleanly
// needs. A directory still holding something stays.
func (s *Spool) removeStaging() {
	if s.sdir == "" {
		return
	}
	names, err := s.sfs.ReadDir(s.sdir)
	if err != nil || slices.ContainsFunc(names, func(n string) bool { return n != stagingStampFile }) {
		return
	}
	if err := s.sfs.Remove(filepath.Join(s.sdir, stagingStampFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("spool: remove the staging stamp", "err", err)
		return
	}
	if err := s.sfs.Remove(s.sdir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("spool: remove the staging directory", "err", err)
	}
}

// moveSegment moves a staged segment to the spool directory, durably: its
// header and valid records are copied into a file of the same name there
// (preallocated if it takes appends), which is synced with the directory;
// the spool then reads and appends through the copy, and deletes the
// staged one. A crash before the deletion leaves the segment in both
// directories, which open resolves (loadStaging).
func (s *Spool) moveSegment(seg *segment) error {
	src := seg.w
	if src == nil {
		f, err := s.sfs.OpenFile(s.segPath(seg), os.O_RDONLY, 0)
		if err != nil {
			return fmt.Errorf("move segment %s: %w", seg.name, err)
		}
		defer f.Close()
		src = f
	}
	data := make([]byte, seg.end)
	if _, err := src.ReadAt(data, 0); err != nil {
		return fmt.Errorf("move segment %s: %w", seg.name, err)
	}
	path := filepath.Join(s.dir, seg.name)
	dst, err := s.fs.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("move segment %s: %w", seg.name, err)
	}
	s.dirDirty = true
	if seg.w != nil {
		err = dst.Allocate(s.opts.SegmentBytes)
	}
	if err == nil {
		var n int
		n, err = dst.WriteAt(data, 0)
		s.wear.BytesWritten += uint64(n)
	}
	if err == nil {
		err = dst.Sync()
		s.wear.Syncs++
	}
	if err == nil {
		err = s.syncDir(s.dir)
	}
	if err != nil {
		// The staged segment stays the one; the partial copy is made
		// again by the next move, or set aside by the next open.
		dst.Close()
		return fmt.Errorf("move segment %s: %w", seg.name, err)
	}
	staged := s.segPath(seg)
	if s.reader.seg == seg {
		s.reader.f.Close()
		s.reader.seg, s.reader.f = nil, nil
	}
	if seg.w != nil {
		seg.w.Close()
		seg.w = dst
	} else {
		dst.Close()
	}
	seg.staged, seg.synced = false, seg.end
	if err := s.sfs.Remove(staged); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// Open finds it in both directories and keeps the copy.
		s.log.Warn("spool: remove a moved staging segment", "err", err)
	}
	return nil
}
