/* noop_milter.c - a milter that asks for every event of a message and does
 * nothing with it: what Postfix's hand-over of a message to any milter costs,
 * the floor under mm-milter's own figure in bench/milter_detach.sh.
 * Built by that script: cc -O2 -o noop_milter noop_milter.c -lmilter -lpthread
 * usage: noop_milter inet:PORT@127.0.0.1 */
#include <libmilter/mfapi.h>
#include <stdio.h>

static sfsistat body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    (void)ctx; (void)chunk; (void)len;
    return SMFIS_CONTINUE;   /* take the chunk, as a real filter would */
}

static sfsistat eom(SMFICTX *ctx)
{
    (void)ctx;
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv)
{
    struct smfiDesc desc = {0};
    desc.xxfi_name = "noop";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_body = body;
    desc.xxfi_eom = eom;
    if (argc != 2 || smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(desc) != MI_SUCCESS) {
        fprintf(stderr, "usage: noop_milter SOCKET\n");
        return 64;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 70;
}
