import re, sys
src = open(sys.argv[1]).read()
out = []; i = 0
while True:
    j = src.find('<<<', i)
    if j < 0: out.append(src[i:]); break
    m = re.search(r'([A-Za-z_]\w*(?:<[^<>]*>)?)\s*$', src[i:j])
    name_start = i + m.start(1)
    name = m.group(1)
    k = src.find('>>>', j)
    cfg = src[j+3:k]
    p = k + 3
    assert src[p] == '(', src[p:p+20]
    depth = 0; q = p
    while True:
        if src[q] == '(': depth += 1
        elif src[q] == ')':
            depth -= 1
            if depth == 0: break
        q += 1
    args = src[p+1:q]
    out.append(src[i:name_start])
    # by value: a launch captured into a graph runs later, after the caller's locals are gone
    out.append('emu_launch(emu_cfg(%s), [=]() { %s(%s); })' % (cfg, name, args))
    i = q + 1
open(sys.argv[2], 'w').write(''.join(out))
