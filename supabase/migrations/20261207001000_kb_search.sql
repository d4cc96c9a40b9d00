-- Knowledge search as one SQL function both backends call through Store._fn
-- (issue 31), so that `search` is written once (storage/base.py). Idempotent.

-- The `p_k` best chunks of `p_kb` for `p_query`, best first, as a json array of
-- {id, content, metadata, score}: full text (kb_text_search) when `p_embedding`
-- is null, else hybrid (kb_hybrid_search: `p_candidates` per list, fused with
-- `p_rrf_k`). The embedding comes as pgvector's text form ('[0.1,0.2,...]'), so
-- that it travels as one value through PostgREST too. Security definer like the
-- other knowledge functions, so that a fixed search path reaches pgvector wherever
-- it was installed; it only reads.
create or replace function public.jelly_kb_search(
    p_kb text,
    p_query text,
    p_embedding text default null,
    p_k integer default 5,
    p_candidates integer default 40,
    p_rrf_k integer default 60
)
returns jsonb
language plpgsql
stable
security definer
set search_path = public, extensions, pg_temp  -- where `create extension vector` put the type
as $$
declare
    v_k integer := greatest(coalesce(p_k, 5), 1);
    v_found jsonb;
begin
    if p_embedding is null then
        select jsonb_agg(jsonb_build_object('id', t.id, 'content', t.content,
                                            'metadata', t.metadata, 'score', t.score)
                         order by t.n)
        into v_found
        from public.kb_text_search(p_query, p_kb, v_k) with ordinality as t
             (id, content, metadata, score, n);
    else
        select jsonb_agg(jsonb_build_object('id', h.id, 'content', h.content,
                                            'metadata', h.metadata, 'score', h.score)
                         order by h.n)
        into v_found
        from public.kb_hybrid_search(p_query, p_embedding::vector, p_kb, v_k,
                                     greatest(coalesce(p_candidates, 40), v_k),
                                     coalesce(p_rrf_k, 60)) with ordinality as h
             (id, content, metadata, score, text_rank, vector_rank, similarity, n);
    end if;
    return coalesce(v_found, '[]'::jsonb);
end;
$$;

select public.jelly_server_only(array['public.jelly_kb_search(text, text, text, integer, integer, integer)']);

notify pgrst, 'reload schema';
