/* lru.c — see lru.h. */
#include "lru.h"

void evict_lru_init(evict_lru *l)
{
    util_list_init(&l->head);
    l->n = 0;
}

void evict_lru_touch(evict_lru *l, util_list *e)
{
    if (util_list_linked(e))
        util_list_del(e);
    else
        l->n++;
    util_list_add_tail(&l->head, e);
}

void evict_lru_remove(evict_lru *l, util_list *e)
{
    if (util_list_linked(e)) {
        util_list_del(e);
        l->n--;
    }
}

util_list *evict_lru_oldest(evict_lru *l, int (*eligible)(util_list *e, void *ctx), void *ctx)
{
    for (util_list *e = l->head.next; e != &l->head; e = e->next)
        if (eligible(e, ctx))
            return e;
    return NULL;
}
