package main

// The `os` module Argo CD gives health scripts in place of Lua's: os.time() and os.date() only
// (argoproj/argo-cd util/lua/oslib_safe.go has the full strftime; the common conversions are
// enough here, our script uses neither).

import (
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
)

var safeOsFuncs = map[string]lua.LGFunction{"time": osTime, "date": osDate}

func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.OsLibName, safeOsFuncs))
	return 1
}

func safeOsLoader(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOsFuncs))
	return 1
}

func osTime(l *lua.LState) int {
	if l.GetTop() == 0 {
		l.Push(lua.LNumber(time.Now().Unix()))
		return 1
	}
	t := l.CheckTable(1)
	field := func(name string, fallback int) int {
		if n, ok := t.RawGetString(name).(lua.LNumber); ok {
			return int(n)
		}
		return fallback
	}
	when := time.Date(field("year", -1), time.Month(field("month", -1)), field("day", -1),
		field("hour", 12), field("min", 0), field("sec", 0), 0, time.Local)
	l.Push(lua.LNumber(when.Unix()))
	return 1
}

var strftime = strings.NewReplacer(
	"%Y", "2006", "%m", "01", "%d", "02", "%H", "15", "%M", "04", "%S", "05",
	"%y", "06", "%b", "Jan", "%B", "January", "%a", "Mon", "%A", "Monday",
	"%p", "PM", "%z", "-0700", "%Z", "MST", "%F", "2006-01-02", "%X", "15:04:05",
	"%c", "02 Jan 06 15:04 MST", "%%", "%",
)

func osDate(l *lua.LState) int {
	now := time.Now()
	format := "%c"
	if l.GetTop() >= 1 {
		format = l.CheckString(1)
		if strings.HasPrefix(format, "!") {
			now = now.UTC()
			format = format[1:]
		}
		if l.GetTop() >= 2 {
			now = time.Unix(l.CheckInt64(2), 0)
		}
	}
	if strings.HasPrefix(format, "*t") {
		t := l.NewTable()
		for name, value := range map[string]int{
			"year": now.Year(), "month": int(now.Month()), "day": now.Day(), "hour": now.Hour(),
			"min": now.Minute(), "sec": now.Second(), "wday": int(now.Weekday()) + 1, "yday": 0,
		} {
			t.RawSetString(name, lua.LNumber(value))
		}
		t.RawSetString("isdst", lua.LFalse)
		l.Push(t)
		return 1
	}
	l.Push(lua.LString(now.Format(strftime.Replace(format))))
	return 1
}
